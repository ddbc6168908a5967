//! The I/O task of a connection: it owns the socket (plain or TLS, upgraded in place
//! for STARTTLS), the stream parser and the write buffer.
//!
//! Parsed stanzas go to the current stanza target with `send().await`, so a peer that
//! sends faster than its actor handles is slowed down by TCP itself. Writes come from
//! the actors through an [`Outbox`], counted in bytes: a peer that does not read is
//! disconnected once its queue passes the configured bound.

use crate::context::Gauge;
use crate::shaper::Shaper;
use crate::stream_error::StreamError;
use crate::stream_parser::{Limits, StreamEvent, StreamHeader, StreamParser};
use crate::tls::{ChannelBinding, TlsContext};
use actix::prelude::*;
use minidom::Element;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio_rustls::server::TlsStream;

/// Control events from the I/O task to the connection actor.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub enum FromIo {
    Header(StreamHeader),
    /// `</stream:stream>` from the peer.
    End,
    TlsUp(ChannelBinding),
    ParseError(StreamError),
    /// The socket is gone; the text says why.
    Closed(String),
}

/// A batch of top-level elements from one read, to the current stanza target.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Vec<Element>);

enum Out {
    Data(Vec<u8>),
    /// Flush, then run the TLS handshake on the same socket and reset the parser.
    StartTls,
    /// Reset the parser (after SASL success the peer opens a new stream).
    ResetParser,
    /// Send a new stanza target (after resource binding).
    Retarget(Recipient<Inbound>),
    /// Flush and close the connection.
    Close,
}

struct OutShared {
    queued: AtomicUsize,
    limit: usize,
    aborted: AtomicBool,
    abort: Notify,
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the peer is not reading: write buffer full")]
    Overflow,
    #[error("the connection is closed")]
    Closed,
}

/// The write side of a connection, held by its actors.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    shared: Arc<OutShared>,
}

impl Outbox {
    fn new(limit: usize) -> (Outbox, mpsc::UnboundedReceiver<Out>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(OutShared {
            queued: AtomicUsize::new(0),
            limit,
            aborted: AtomicBool::new(false),
            abort: Notify::new(),
        });
        (Outbox { tx, shared }, rx)
    }

    /// Queue bytes; over the bound the connection is aborted and the write refused.
    pub fn send_bytes(&self, data: Vec<u8>) -> Result<(), WriteError> {
        if self.shared.aborted.load(Ordering::Relaxed) {
            return Err(WriteError::Closed);
        }
        let n = data.len();
        let queued = self.shared.queued.fetch_add(n, Ordering::Relaxed) + n;
        if queued > self.shared.limit {
            self.shared.queued.fetch_sub(n, Ordering::Relaxed);
            self.abort();
            return Err(WriteError::Overflow);
        }
        self.tx
            .send(Out::Data(data))
            .map_err(|_| WriteError::Closed)
    }

    pub fn send_str(&self, s: &str) -> Result<(), WriteError> {
        self.send_bytes(s.as_bytes().to_vec())
    }

    /// Serialise and queue one element.
    pub fn send_element(&self, el: &Element) -> Result<(), WriteError> {
        self.send_bytes(crate::xml_writer::to_bytes(el))
    }

    pub fn start_tls(&self) {
        let _ = self.tx.send(Out::StartTls);
    }

    pub fn reset_parser(&self) {
        let _ = self.tx.send(Out::ResetParser);
    }

    pub fn retarget(&self, to: Recipient<Inbound>) {
        let _ = self.tx.send(Out::Retarget(to));
    }

    /// Write what is queued, then close.
    pub fn close(&self) {
        let _ = self.tx.send(Out::Close);
    }

    /// Drop the connection now, without writing what is queued.
    pub fn abort(&self) {
        self.shared.aborted.store(true, Ordering::Relaxed);
        self.shared.abort.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.shared.aborted.load(Ordering::Relaxed)
    }
}

/// The socket, before and after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(data).await,
            Conn::Tls(s) => {
                s.write_all(data).await?;
                s.flush().await
            }
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        };
    }
}

/// Everything the I/O task needs at start.
pub struct IoParams {
    pub tcp: TcpStream,
    pub direct_tls: bool,
    pub tls: TlsContext,
    pub limits: Limits,
    pub tls_timeout: Duration,
    pub write_limit: usize,
    /// Sustained bytes per second read from the peer (0: no shaping) and the burst.
    pub read_rate: u64,
    pub read_burst: u64,
    /// Counts the task in the server's statistics while it runs.
    pub gauge: Gauge,
}

/// Start the I/O task for a connection on the current arbiter; returns the outbox.
pub fn spawn(
    params: IoParams,
    control: Recipient<FromIo>,
    target: Recipient<Inbound>,
    log: slog::Logger,
) -> Outbox {
    let (outbox, rx) = Outbox::new(params.write_limit);
    let shared = outbox.shared.clone();
    actix_rt::spawn(async move {
        let reason = run(params, rx, shared, &control, target, &log).await;
        slog::debug!(log, # "XMPPI", "connection closed"; "reason" => &reason);
        control.do_send(FromIo::Closed(reason));
    });
    outbox
}

const READ_CHUNK: usize = 4096;

async fn run(
    params: IoParams,
    mut rx: mpsc::UnboundedReceiver<Out>,
    shared: Arc<OutShared>,
    control: &Recipient<FromIo>,
    mut target: Recipient<Inbound>,
    log: &slog::Logger,
) -> String {
    let IoParams {
        tcp,
        direct_tls,
        tls,
        limits,
        tls_timeout,
        read_rate,
        read_burst,
        gauge: _gauge,
        ..
    } = params;
    let mut shaper = Shaper::new(read_rate, read_burst, Instant::now());
    let mut conn = if direct_tls {
        match handshake(tcp, &tls, tls_timeout).await {
            Ok((c, cb)) => {
                if control.send(FromIo::TlsUp(cb)).await.is_err() {
                    return "connection actor gone".into();
                }
                c
            }
            Err(e) => return e,
        }
    } else {
        Conn::Plain(tcp)
    };
    let mut parser = StreamParser::new(limits);
    let mut rbuf = vec![0u8; READ_CHUNK];
    let mut wbuf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut reading = true;
    loop {
        tokio::select! {
            biased;
            _ = shared.abort.notified() => return "aborted: peer not reading or server closing".into(),
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return "connection actor gone".into() };
                // Batch every queued write into one syscall.
                let mut next = Some(cmd);
                while let Some(cmd) = next.take() {
                    match cmd {
                        Out::Data(d) => {
                            shared.queued.fetch_sub(d.len(), Ordering::Relaxed);
                            if wbuf.is_empty() { wbuf = d } else { wbuf.extend_from_slice(&d) }
                        }
                        other => {
                            if let Err(e) = flush(&mut conn, &mut wbuf, &shared, log).await { return e; }
                            match other {
                                Out::StartTls => {
                                    let Conn::Plain(tcp) = conn else { return "STARTTLS on a TLS stream".into() };
                                    match handshake(tcp, &tls, tls_timeout).await {
                                        Ok((c, cb)) => {
                                            conn = c;
                                            parser = StreamParser::new(limits);
                                            if control.send(FromIo::TlsUp(cb)).await.is_err() {
                                                return "connection actor gone".into();
                                            }
                                        }
                                        Err(e) => return e,
                                    }
                                }
                                Out::ResetParser => parser = StreamParser::new(limits),
                                Out::Retarget(t) => target = t,
                                Out::Close => {
                                    conn.shutdown().await;
                                    linger(&mut conn).await;
                                    return "closed by server".into();
                                }
                                Out::Data(_) => {}
                            }
                        }
                    }
                    next = rx.try_recv().ok();
                }
                if let Err(e) = flush(&mut conn, &mut wbuf, &shared, log).await { return e; }
            }
            r = shaped_read(&mut conn, &mut rbuf, shaper.as_mut()), if reading => {
                let n = match r {
                    Ok(0) => return "peer closed the connection".into(),
                    Ok(n) => n,
                    Err(e) => return format!("read: {e}"),
                };
                if let Some(s) = shaper.as_mut() {
                    s.consume(n, Instant::now());
                }
                slog::trace!(log, # "XMPPI", "recv"; "xml" => crate::log_mask::mask(&rbuf[..n]));
                let res = parser.feed(&rbuf[..n], &mut events);
                let mut stanzas = Vec::new();
                for ev in events.drain(..) {
                    match ev {
                        StreamEvent::Stanza(el) => stanzas.push(el),
                        other => {
                            if !stanzas.is_empty() && target.send(Inbound(std::mem::take(&mut stanzas))).await.is_err() {
                                return "stanza target gone".into();
                            }
                            let ctl = match other {
                                StreamEvent::Header(h) => FromIo::Header(h),
                                _ => FromIo::End,
                            };
                            if control.send(ctl).await.is_err() {
                                return "connection actor gone".into();
                            }
                        }
                    }
                }
                if !stanzas.is_empty() && target.send(Inbound(stanzas)).await.is_err() {
                    return "stanza target gone".into();
                }
                if let Err(e) = res {
                    // Stop reading; the actor writes the stream error and closes.
                    reading = false;
                    if control.send(FromIo::ParseError(e)).await.is_err() {
                        return "connection actor gone".into();
                    }
                }
            }
        }
    }
}

/// Read once, after waiting as long as the shaper asks. Dropping the future while it
/// waits loses nothing (the next one asks again).
async fn shaped_read(
    conn: &mut Conn,
    buf: &mut [u8],
    shaper: Option<&mut Shaper>,
) -> std::io::Result<usize> {
    if let Some(s) = shaper {
        let d = s.delay(Instant::now());
        if !d.is_zero() {
            Shaper::note_delayed();
            tokio::time::sleep(d).await;
        }
    }
    conn.read(buf).await
}

async fn flush(
    conn: &mut Conn,
    wbuf: &mut Vec<u8>,
    shared: &OutShared,
    log: &slog::Logger,
) -> Result<(), String> {
    if wbuf.is_empty() {
        return Ok(());
    }
    slog::trace!(log, # "XMPPI", "send"; "xml" => crate::log_mask::mask(wbuf));
    tokio::select! {
        biased;
        _ = shared.abort.notified() => return Err("aborted: peer not reading".into()),
        r = conn.write_all(wbuf) => r.map_err(|e| format!("write: {e}"))?,
    }
    wbuf.clear();
    if wbuf.capacity() > 64 * 1024 {
        *wbuf = Vec::new();
    }
    Ok(())
}

async fn handshake(
    tcp: TcpStream,
    tls: &TlsContext,
    timeout: Duration,
) -> Result<(Conn, ChannelBinding), String> {
    match tokio::time::timeout(timeout, tls.acceptor.accept(tcp)).await {
        Ok(Ok(s)) => {
            let cb = tls.channel_binding(s.get_ref().1);
            Ok((Conn::Tls(Box::new(s)), cb))
        }
        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
        Err(_) => Err("TLS handshake timed out".into()),
    }
}

/// After our closing tag, give the peer a moment to close its side.
async fn linger(conn: &mut Conn) {
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

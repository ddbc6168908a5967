//! The I/O task of a connection: it owns the [`Transport`] (the socket, TLS, the stream
//! parser and the write buffer), the read shaper, and the queue from the actors.
//!
//! Parsed stanzas go to the current stanza target with `send().await`, so a peer that
//! sends faster than its actor handles is slowed down by TCP itself. Writes come from
//! the actors through an [`Outbox`], counted in bytes: a peer that does not read is
//! disconnected once its queue passes the configured bound.
//!
//! Everything queued when the task wakes goes out in one write. Data queued as
//! [`Outbox::try_send_bytes_later`] (a room's fan-out) may wait up to [`COALESCE`] when
//! the connection was written to less than that ago, so that a busy connection gets
//! one write (one TLS record, one syscall) for several such messages instead of one
//! each; anything else queued behind or before it flushes it at once.

use super::tcp::TcpTransport;
use super::transport::{READ_CHUNK, Transport};
use crate::context::Gauge;
use crate::monitor::{ConnInfo, Registered};
use actix::prelude::*;
use minidom::Element;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use xmppd_proto::net::shaper::Shaper;
use xmppd_proto::net::tls::{ChannelBinding, TlsContext};
use xmppd_proto::stream::error::StreamError;
use xmppd_proto::xml::stream_parser::{Limits, StreamEvent, StreamHeader};

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
    /// Nothing more comes to this target: the stream was handed over.
    HandedOver,
}

/// A batch of top-level elements from one read, to the current stanza target.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Inbound(pub Vec<Element>);

enum Out {
    Data(Vec<u8>),
    /// Data that may wait up to [`COALESCE`] for more (see the module's doc).
    Later(Vec<u8>),
    /// Flush, then upgrade the transport to TLS (it resets its parser).
    StartTls,
    /// Reset the transport's parser (after SASL success the peer opens a new stream).
    ResetParser,
    /// Hand the stream over to new targets (the session, after resource binding).
    Handover(Recipient<Inbound>, Recipient<FromIo>),
    /// Flush and close the connection.
    Close,
}

/// The queue between a connection's actors and its I/O task. They all run on the same
/// arbiter thread, so this is a plain queue with a wake-up, not a channel: an idle
/// connection holds no queue memory at all.
struct OutShared {
    queue: RefCell<VecDeque<Out>>,
    /// Bytes in the queue (the write bound counts them).
    queued: Cell<usize>,
    limit: usize,
    aborted: Cell<bool>,
    /// `Close` is queued: what would follow it is never written, so it is refused.
    closing: Cell<bool>,
    /// The I/O task has ended.
    closed: Cell<bool>,
    wake: Notify,
    abort: Notify,
}

impl OutShared {
    /// Queue a command for the I/O task (dropped once the task has ended).
    fn push(&self, o: Out) {
        if !self.closed.get() {
            self.queue.borrow_mut().push_back(o);
            self.wake.notify_one();
        }
    }

    fn pop(&self) -> Option<Out> {
        let mut q = self.queue.borrow_mut();
        let o = q.pop_front();
        if q.is_empty() && q.capacity() > 0 {
            *q = VecDeque::new();
        }
        o
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("the peer is not reading: write buffer full")]
    Overflow,
    #[error("the connection is closed")]
    Closed,
}

/// The write side of a connection, held by its actors (on the connection's arbiter).
#[derive(Clone)]
pub struct Outbox {
    shared: Rc<OutShared>,
}

impl Outbox {
    fn new(limit: usize) -> Outbox {
        let shared = Rc::new(OutShared {
            queue: RefCell::new(VecDeque::new()),
            queued: Cell::new(0),
            limit,
            aborted: Cell::new(false),
            closing: Cell::new(false),
            closed: Cell::new(false),
            wake: Notify::new(),
            abort: Notify::new(),
        });
        Outbox { shared }
    }

    /// Queue bytes; over the bound the connection is aborted and the write refused.
    pub fn send_bytes(&self, data: Vec<u8>) -> Result<(), WriteError> {
        self.try_send_bytes(data).map_err(|(e, _)| e)
    }

    /// [`Outbox::send_bytes`], giving the bytes back when they are refused.
    pub fn try_send_bytes(&self, data: Vec<u8>) -> Result<(), (WriteError, Vec<u8>)> {
        self.queue_bytes(data, false)
    }

    /// [`Outbox::try_send_bytes`] for data that may wait up to [`COALESCE`] to go out
    /// with what follows it (a room's fan-out; see the module's doc).
    pub fn try_send_bytes_later(&self, data: Vec<u8>) -> Result<(), (WriteError, Vec<u8>)> {
        self.queue_bytes(data, true)
    }

    fn queue_bytes(&self, data: Vec<u8>, later: bool) -> Result<(), (WriteError, Vec<u8>)> {
        if self.is_closed() {
            return Err((WriteError::Closed, data));
        }
        let queued = self.shared.queued.get() + data.len();
        if queued > self.shared.limit {
            self.abort();
            return Err((WriteError::Overflow, data));
        }
        self.shared.push(if later {
            Out::Later(data)
        } else {
            Out::Data(data)
        });
        self.shared.queued.set(queued);
        Ok(())
    }

    pub fn send_str(&self, s: &str) -> Result<(), WriteError> {
        self.send_bytes(s.as_bytes().to_vec())
    }

    /// Serialise and queue one element.
    pub fn send_element(&self, el: &Element) -> Result<(), WriteError> {
        self.send_bytes(xmppd_proto::xml::writer::to_bytes(el))
    }

    pub fn start_tls(&self) {
        self.shared.push(Out::StartTls);
    }

    pub fn reset_parser(&self) {
        self.shared.push(Out::ResetParser);
    }

    /// From now on stanzas and stream events go to these; the old control target
    /// gets [`FromIo::HandedOver`] last.
    pub fn handover(&self, stanzas: Recipient<Inbound>, control: Recipient<FromIo>) {
        self.shared.push(Out::Handover(stanzas, control));
    }

    /// Write what is queued, then close.
    pub fn close(&self) {
        self.shared.push(Out::Close);
        self.shared.closing.set(true);
    }

    /// Drop the connection now, without writing what is queued.
    pub fn abort(&self) {
        self.shared.aborted.set(true);
        self.shared.abort.notify_one();
    }

    /// Closed, aborted, or closing: nothing queued now would be written.
    pub fn is_closed(&self) -> bool {
        self.shared.closing.get() || self.shared.closed.get() || self.shared.aborted.get()
    }
}

/// Everything the I/O task of a TCP connection needs at start.
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
    /// Counts the connection against the `channels` cap while the task runs.
    pub channel: Gauge,
    /// The connection's entry in the monitor's registry (listed while the task runs).
    pub conn: Registered,
}

/// What the I/O task needs at start besides its transport.
pub struct TaskParams {
    pub write_limit: usize,
    /// Sustained bytes per second read from the peer (0: no shaping) and the burst.
    pub read_rate: u64,
    pub read_burst: u64,
    /// Counts the connection against the `channels` cap while the task runs.
    pub channel: Gauge,
    /// The connection's entry in the monitor's registry (listed while the task runs);
    /// the task counts bytes and stanzas read and bytes written on it.
    pub conn: Registered,
}

/// Start the I/O task for a TCP connection on the current arbiter; returns the outbox.
pub fn spawn(
    params: IoParams,
    control: Recipient<FromIo>,
    target: Recipient<Inbound>,
    log: slog::Logger,
) -> Outbox {
    let transport = TcpTransport::new(
        params.tcp,
        params.direct_tls,
        params.tls,
        params.tls_timeout,
        params.limits,
    );
    let task = TaskParams {
        write_limit: params.write_limit,
        read_rate: params.read_rate,
        read_burst: params.read_burst,
        channel: params.channel,
        conn: params.conn,
    };
    spawn_transport(transport, task, control, target, log)
}

/// Start the I/O task for a connection over any transport on the current arbiter;
/// returns the outbox.
pub fn spawn_transport<T: Transport>(
    transport: T,
    params: TaskParams,
    control: Recipient<FromIo>,
    target: Recipient<Inbound>,
    log: slog::Logger,
) -> Outbox {
    let outbox = Outbox::new(params.write_limit);
    let shared = outbox.shared.clone();
    actix_rt::spawn(async move {
        let (reason, control) = run(transport, params, &shared, control, target, &log).await;
        shared.closed.set(true);
        shared.queue.borrow_mut().clear();
        slog::debug!(log, # "XMPPI", "connection closed"; "reason" => &reason);
        control.do_send(FromIo::Closed(reason));
    });
    outbox
}

/// How long a stream stays quiet between stanzas before its parser is dropped (and
/// rebuilt from the stream's declarations when data comes again).
const PARK_AFTER: Duration = Duration::from_secs(2);

/// How long data queued with [`Outbox::try_send_bytes_later`] waits at most, when the
/// connection was written to less than this ago: a connection gets at most one such
/// deferred write per `COALESCE`.
pub const COALESCE: Duration = Duration::from_millis(4);

/// Deferred output past this many bytes goes out at once (about one TLS record).
const COALESCE_BYTES: usize = 16 * 1024;

/// The I/O task's state between events.
struct Io<T> {
    transport: T,
    target: Recipient<Inbound>,
    /// Where stream events go: the connection actor, then the session.
    control: Recipient<FromIo>,
    shaper: Option<Shaper>,
    conn: Arc<ConnInfo>,
    reading: bool,
    park_at: Option<tokio::time::Instant>,
    /// When the last write went out.
    flushed_at: tokio::time::Instant,
    /// Deferred output waits until then (framed, not written).
    flush_at: Option<tokio::time::Instant>,
    /// Bytes framed since the last flush.
    pending: usize,
}

async fn run<T: Transport>(
    transport: T,
    params: TaskParams,
    shared: &OutShared,
    control: Recipient<FromIo>,
    target: Recipient<Inbound>,
    log: &slog::Logger,
) -> (String, Recipient<FromIo>) {
    let TaskParams {
        read_rate,
        read_burst,
        channel: _channel,
        conn: registered,
        ..
    } = params;
    let _counted = crate::metrics::ActorGuard::new(crate::metrics::ActorKind::IoTask);
    let mut io = Io {
        transport,
        target,
        control,
        shaper: Shaper::new(read_rate, read_burst, Instant::now()),
        conn: registered.info().clone(),
        reading: true,
        park_at: None,
        flushed_at: tokio::time::Instant::now(),
        flush_at: None,
        pending: 0,
    };
    if let Err(e) = Box::pin(io.open()).await {
        return (e, io.control);
    }
    // The loop itself only waits: the work after each wake-up runs in boxed futures,
    // so an idle connection's task stays small.
    loop {
        let r = tokio::select! {
            biased;
            _ = shared.abort.notified() => Err("aborted: peer not reading or server closing".into()),
            _ = shared.wake.notified() => match shared.pop() {
                None => Ok(()),
                Some(cmd) => Box::pin(io.on_commands(cmd, shared, log)).await,
            },
            _ = tokio::time::sleep_until(io.flush_at.unwrap_or_else(tokio::time::Instant::now)), if io.flush_at.is_some() => {
                Box::pin(io.flush(shared, log)).await
            }
            _ = tokio::time::sleep_until(io.park_at.unwrap_or_else(tokio::time::Instant::now)), if io.park_at.is_some() => {
                io.park_at = None;
                io.transport.park();
                Ok(())
            }
            r = shaped_readable(&io.transport, io.shaper.as_mut()), if io.reading => match r {
                Err(e) => Err(format!("read: {e}")),
                Ok(()) => Box::pin(io.on_readable(shared, log)).await,
            },
        };
        if let Err(reason) = r {
            return (reason, io.control);
        }
    }
}

impl<T: Transport> Io<T> {
    /// Open the transport; when TLS came up with it (direct TLS), tell the actor.
    async fn open(&mut self) -> Result<(), String> {
        match self.transport.open().await? {
            Some(cb) => self.tls_up(cb).await,
            None => Ok(()),
        }
    }

    async fn tls_up(&mut self, cb: ChannelBinding) -> Result<(), String> {
        self.conn.set_tls(cb.version, cb.cipher);
        self.control
            .send(FromIo::TlsUp(cb))
            .await
            .map_err(|_| "connection actor gone".to_string())
    }

    /// Write everything framed, now.
    async fn flush(&mut self, shared: &OutShared, log: &slog::Logger) -> Result<(), String> {
        self.flush_at = None;
        self.pending = 0;
        self.flushed_at = tokio::time::Instant::now();
        flush(&mut self.transport, shared, log).await
    }

    /// Handle a command and everything queued behind it; writes are batched into one
    /// syscall, deferred by up to [`COALESCE`] when all of it may wait. `Err` ends the
    /// connection (with the reason).
    async fn on_commands(
        &mut self,
        first: Out,
        shared: &OutShared,
        log: &slog::Logger,
    ) -> Result<(), String> {
        let mut next = Some(first);
        let mut now = false;
        while let Some(cmd) = next.take() {
            match cmd {
                Out::Data(d) => {
                    now = true;
                    self.frame(d, shared);
                }
                Out::Later(d) => self.frame(d, shared),
                other => {
                    self.flush(shared, log).await?;
                    match other {
                        Out::StartTls => {
                            let cb = self.transport.start_tls().await?;
                            self.tls_up(cb).await?
                        }
                        Out::ResetParser => self.transport.reset(),
                        Out::Handover(stanzas, control) => {
                            // the old target hears it last, after all it was sent
                            let old = std::mem::replace(&mut self.control, control);
                            self.target = stanzas;
                            let _ = old.send(FromIo::HandedOver).await;
                        }
                        Out::Close => {
                            self.transport.close().await;
                            return Err("closed by server".into());
                        }
                        Out::Data(_) | Out::Later(_) => {}
                    }
                }
            }
            next = shared.pop();
        }
        let wait_until = self.flushed_at + COALESCE;
        if !now && self.pending <= COALESCE_BYTES && tokio::time::Instant::now() < wait_until {
            // the timer in the task's loop writes it (or whatever comes first)
            self.flush_at.get_or_insert(wait_until);
            return Ok(());
        }
        self.flush(shared, log).await
    }

    fn frame(&mut self, d: Vec<u8>, shared: &OutShared) {
        shared
            .queued
            .set(shared.queued.get().saturating_sub(d.len()));
        self.conn.note_written(d.len());
        self.pending += d.len();
        self.transport.frame(d);
    }

    /// The transport is readable: read, decrypt, parse, and hand the events on.
    async fn on_readable(&mut self, shared: &OutShared, log: &slog::Logger) -> Result<(), String> {
        // a shaped connection reads no more than its bucket holds
        let max = self
            .shaper
            .as_mut()
            .map_or(READ_CHUNK, |s| s.allowance(Instant::now(), 512));
        let read = self.transport.read(max, log);
        // what the transport wrote on its own (TLS: our KeyUpdate, an alert) goes out
        // now, before anything sealed later
        let control = self.transport.write_control().await;
        if read.is_ok()
            && let Err(e) = control
        {
            return Err(format!("write: {e}"));
        }
        let outcome = match read {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("read: {e}")),
        };
        if let Some(s) = self.shaper.as_mut() {
            s.consume(outcome.wire_bytes, Instant::now());
        }
        self.park_at = outcome
            .clean
            .then(|| tokio::time::Instant::now() + PARK_AFTER);
        self.conn.note_read(outcome.xml_bytes);
        let gone = |_| "connection actor gone".to_string();
        let mut stanzas = Vec::new();
        for ev in outcome.events {
            match ev {
                StreamEvent::Stanza(el) => stanzas.push(el),
                other => {
                    if !stanzas.is_empty() {
                        self.conn.note_stanzas_in(stanzas.len());
                        let batch = Inbound(std::mem::take(&mut stanzas));
                        self.target
                            .send(batch)
                            .await
                            .map_err(|_| "stanza target gone".to_string())?;
                    }
                    let ctl = match other {
                        StreamEvent::Header(h) => FromIo::Header(h),
                        _ => FromIo::End,
                    };
                    self.control.send(ctl).await.map_err(gone)?;
                }
            }
        }
        if !stanzas.is_empty() {
            self.conn.note_stanzas_in(stanzas.len());
            self.target
                .send(Inbound(stanzas))
                .await
                .map_err(|_| "stanza target gone".to_string())?;
        }
        if let Some(e) = outcome.error {
            // Stop reading; the actor writes the stream error and closes.
            self.reading = false;
            self.park_at = None;
            self.control
                .send(FromIo::ParseError(e))
                .await
                .map_err(gone)?;
        } else if outcome.closed {
            // the peer closed (TLS close_notify, or the end of the TCP stream): what is
            // queued for it goes out, then our close (with TLS, our close_notify)
            self.write_queued(shared, log).await?;
            self.transport.close().await;
            return Err("peer closed the connection".into());
        }
        Ok(())
    }

    /// Write the data queued for the peer (up to a close), dropping other commands: the
    /// connection is ending.
    async fn write_queued(&mut self, shared: &OutShared, log: &slog::Logger) -> Result<(), String> {
        while let Some(cmd) = shared.pop() {
            match cmd {
                Out::Data(d) | Out::Later(d) => self.transport.frame(d),
                Out::Close => break,
                _ => {}
            }
        }
        shared.queued.set(0);
        flush(&mut self.transport, shared, log).await
    }
}

/// Wait until the transport is readable, after waiting as long as the shaper asks.
/// Dropping the future while it waits loses nothing (the next one asks again).
async fn shaped_readable<T: Transport>(
    transport: &T,
    shaper: Option<&mut Shaper>,
) -> std::io::Result<()> {
    if let Some(s) = shaper {
        let d = s.delay(Instant::now());
        if !d.is_zero() {
            Shaper::note_delayed();
            tokio::time::sleep(d).await;
        }
    }
    transport.readable().await
}

/// Write everything pending, unless the connection is aborted meanwhile.
async fn flush<T: Transport>(
    transport: &mut T,
    shared: &OutShared,
    log: &slog::Logger,
) -> Result<(), String> {
    if !transport.has_output() {
        return Ok(());
    }
    tokio::select! {
        biased;
        _ = shared.abort.notified() => Err("aborted: peer not reading".into()),
        r = transport.flush(log) => r.map_err(|e| format!("write: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Stats;
    use crate::monitor::ConnKind;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use xmppd_proto::net::tls::self_signed_pem;

    /// Takes what the I/O task hands on and drops it.
    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<FromIo> for Sink {
        type Result = ();
        fn handle(&mut self, _: FromIo, _: &mut Context<Self>) {}
    }
    impl Handler<Inbound> for Sink {
        type Result = ();
        fn handle(&mut self, _: Inbound, _: &mut Context<Self>) {}
    }

    /// Read from the peer until `want` has come (or the connection ends).
    async fn read_until(peer: &mut TcpStream, got: &mut Vec<u8>, want: &[u8]) {
        let mut buf = [0u8; 4096];
        while !got.windows(want.len()).any(|w| w == want) {
            let n = tokio::time::timeout(Duration::from_secs(10), peer.read(&mut buf))
                .await
                .expect("data in time")
                .expect("read");
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(got));
            got.extend_from_slice(&buf[..n]);
        }
    }

    #[actix_rt::test]
    async fn deferred_output_keeps_its_order_and_always_goes_out() {
        let (cert, key) = self_signed_pem(&["a.test".into()]).expect("cert");
        let ck = xmppd_proto::net::tls::certified_key_from_der(
            vec![
                rustls::pki_types::pem::PemObject::from_pem_slice(cert.as_bytes())
                    .expect("cert pem"),
            ],
            rustls::pki_types::pem::PemObject::from_pem_slice(key.as_bytes()).expect("key"),
        )
        .expect("key");
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let mut peer = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = l.accept().await.expect("accept");
        let stats = Arc::new(Stats::default());
        let sink = Sink.start();
        let out = spawn(
            IoParams {
                tcp: server,
                direct_tls: false,
                tls: TlsContext::new(ck, Vec::new()).expect("tls"),
                limits: Limits::default(),
                tls_timeout: Duration::from_secs(5),
                write_limit: 1 << 20,
                read_rate: 0,
                read_burst: 0,
                channel: Gauge::new(&stats, |s| &s.connections),
                conn: Registered::new(addr, ConnKind::Client),
            },
            sink.clone().recipient(),
            sink.recipient(),
            slog::Logger::root(slog::Discard, slog::o!()),
        );
        let mut got = Vec::new();
        // deferred data with nothing after it: the timer writes it
        out.try_send_bytes(b"<a/>".to_vec()).expect("queued");
        out.try_send_bytes_later(b"<b/>".to_vec()).expect("queued");
        out.try_send_bytes_later(b"<c/>".to_vec()).expect("queued");
        read_until(&mut peer, &mut got, b"<c/>").await;
        // right after a write: deferred, then flushed by what may not wait, in order
        out.try_send_bytes_later(b"<d/>".to_vec()).expect("queued");
        tokio::task::yield_now().await;
        out.try_send_bytes(b"<e/>".to_vec()).expect("queued");
        read_until(&mut peer, &mut got, b"<e/>").await;
        // and by a close
        out.try_send_bytes_later(b"<f/>".to_vec()).expect("queued");
        out.close();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), peer.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .expect("read");
        got.extend_from_slice(&rest);
        assert_eq!(got, b"<a/><b/><c/><d/><e/><f/>");
    }
}

//! The I/O task of a connection: it owns the [`Transport`] (the socket, TLS, the stream
//! parser and the write buffer), the read shaper, and the queue from the actors.
//!
//! Parsed stanzas go to the current stanza target with `send().await`, so a peer that
//! sends faster than its actor handles is slowed down by TCP itself. Writes come from
//! the actors through an [`Outbox`], counted in bytes: a peer that does not read is
//! disconnected once its queue passes the configured bound.

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
    /// The stanza target asked for a pause: the task reads nothing from the peer (it
    /// still writes, and sees aborts and closes) until reads are resumed.
    paused: Cell<bool>,
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
            paused: Cell::new(false),
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
        if self.is_closed() {
            return Err((WriteError::Closed, data));
        }
        let queued = self.shared.queued.get() + data.len();
        if queued > self.shared.limit {
            self.abort();
            return Err((WriteError::Overflow, data));
        }
        self.shared.push(Out::Data(data));
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

    /// Read nothing more from the peer until [`Outbox::resume_reads`] (back-pressure:
    /// TCP then slows the peer down). Writes go on. A read already under way is still
    /// handed over.
    pub fn pause_reads(&self) {
        self.shared.paused.set(true);
    }

    /// Read from the peer again after [`Outbox::pause_reads`].
    pub fn resume_reads(&self) {
        if self.shared.paused.replace(false) {
            self.shared.wake.notify_one();
        }
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
            _ = tokio::time::sleep_until(io.park_at.unwrap_or_else(tokio::time::Instant::now)), if io.park_at.is_some() => {
                io.park_at = None;
                io.transport.park();
                Ok(())
            }
            r = shaped_readable(&io.transport, io.shaper.as_mut()), if io.reading && !shared.paused.get() => match r {
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

    /// Handle a command and everything queued behind it; writes are batched into one
    /// syscall. `Err` ends the connection (with the reason).
    async fn on_commands(
        &mut self,
        first: Out,
        shared: &OutShared,
        log: &slog::Logger,
    ) -> Result<(), String> {
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Out::Data(d) => {
                    shared
                        .queued
                        .set(shared.queued.get().saturating_sub(d.len()));
                    self.conn.note_written(d.len());
                    self.transport.frame(d);
                }
                other => {
                    flush(&mut self.transport, shared, log).await?;
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
                        Out::Data(_) => {}
                    }
                }
            }
            next = shared.pop();
        }
        flush(&mut self.transport, shared, log).await
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
                Out::Data(d) => self.transport.frame(d),
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

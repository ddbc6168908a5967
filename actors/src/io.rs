//! The I/O task of a connection: it owns the socket (plain or TLS, upgraded in place
//! for STARTTLS), the stream parser and the write buffer.
//!
//! Parsed stanzas go to the current stanza target with `send().await`, so a peer that
//! sends faster than its actor handles is slowed down by TCP itself. Writes come from
//! the actors through an [`Outbox`], counted in bytes: a peer that does not read is
//! disconnected once its queue passes the configured bound.

use crate::context::Gauge;
use actix::prelude::*;
use minidom::Element;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use xmppd_proto::net::record_layer::RecordLayer;
use xmppd_proto::net::shaper::Shaper;
use xmppd_proto::net::tls::{ChannelBinding, TlsContext};
use xmppd_proto::stream::error::StreamError;
use xmppd_proto::xml::fast_parser::FastParser;
use xmppd_proto::xml::stream_parser::{Limits, Parked, StreamEvent, StreamHeader};

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
    /// Flush, then run the TLS handshake on the same socket and reset the parser.
    StartTls,
    /// Reset the parser (after SASL success the peer opens a new stream).
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
    }

    /// Drop the connection now, without writing what is queued.
    pub fn abort(&self) {
        self.shared.aborted.set(true);
        self.shared.abort.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.get() || self.shared.aborted.get()
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
    /// Count the task (and the connection against the `channels` cap) while it runs.
    pub gauges: (Gauge, Gauge),
}

/// Start the I/O task for a connection on the current arbiter; returns the outbox.
pub fn spawn(
    params: IoParams,
    control: Recipient<FromIo>,
    target: Recipient<Inbound>,
    log: slog::Logger,
) -> Outbox {
    let outbox = Outbox::new(params.write_limit);
    let shared = outbox.shared.clone();
    actix_rt::spawn(async move {
        let (reason, control) = run(params, &shared, control, target, &log).await;
        shared.closed.set(true);
        shared.queue.borrow_mut().clear();
        slog::debug!(log, # "XMPPI", "connection closed"; "reason" => &reason);
        control.do_send(FromIo::Closed(reason));
    });
    outbox
}

/// Bytes read from a socket at once, into a buffer shared by every connection of the
/// thread: an idle connection holds no read buffer.
const READ_CHUNK: usize = 32 * 1024;

/// How long a stream stays quiet between stanzas before its parser is dropped (and
/// rebuilt from the stream's declarations when data comes again).
const PARK_AFTER: Duration = Duration::from_secs(2);

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; READ_CHUNK]);
}

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

/// What one read produced.
struct ReadOutcome {
    events: Vec<StreamEvent>,
    error: Option<StreamError>,
    /// The peer closed (TCP EOF or TLS close_notify).
    closed: bool,
    /// The data ended between stanzas (the parser may be parked later).
    clean: bool,
}

/// Read what the socket has, decrypt it, and parse it — synchronously, with the
/// thread's read buffer. `None` when the readiness was spurious.
fn read_now(
    tcp: &TcpStream,
    tls: &mut Option<Box<RecordLayer>>,
    parser: &mut ParserSlot,
    limits: Limits,
    max: usize,
    log: &slog::Logger,
) -> std::io::Result<Option<(usize, ReadOutcome)>> {
    READ_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        let max = max.clamp(1, buf.len());
        let n = match tcp.try_read(&mut buf[..max]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = ReadOutcome {
            events: Vec::new(),
            error: None,
            closed: n == 0,
            clean: false,
        };
        if n == 0 {
            return Ok(Some((0, out)));
        }
        let mut last = 0u8;
        let mut feed = |data: &[u8]| {
            slog::trace!(log, # "XMPPI", "recv"; "xml" => xmppd_proto::xml::log_mask::mask(data));
            if out.error.is_none()
                && let Err(e) = parser.active(limits).feed(data, &mut out.events)
            {
                out.error = Some(e);
            }
            if let Some(b) = data.iter().rev().find(|b| !b.is_ascii_whitespace()) {
                last = *b;
            }
        };
        match tls {
            Some(layer) => match layer.open(&mut buf[..n], &mut feed) {
                Ok(Some(xmppd_proto::net::record_layer::Event::Closed)) => out.closed = true,
                Ok(None) => {}
                Err(e) => {
                    slog::warn!(log, # "XMPPI", "TLS record layer: closing"; "error" => %e);
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
                }
            },
            None => feed(&buf[..n]),
        }
        out.clean = last == b'>' && tls.as_ref().is_none_or(|l| l.pending() == 0);
        Ok(Some((n, out)))
    })
}

/// The I/O task's state between events.
struct Io {
    tcp: TcpStream,
    tls: Option<Box<RecordLayer>>,
    tls_ctx: TlsContext,
    tls_timeout: Duration,
    limits: Limits,
    parser: ParserSlot,
    wbuf: Vec<u8>,
    target: Recipient<Inbound>,
    /// Where stream events go: the connection actor, then the session.
    control: Recipient<FromIo>,
    shaper: Option<Shaper>,
    reading: bool,
    park_at: Option<tokio::time::Instant>,
}

async fn run(
    params: IoParams,
    shared: &OutShared,
    control: Recipient<FromIo>,
    target: Recipient<Inbound>,
    log: &slog::Logger,
) -> (String, Recipient<FromIo>) {
    let IoParams {
        tcp,
        direct_tls,
        tls: tls_ctx,
        limits,
        tls_timeout,
        read_rate,
        read_burst,
        gauges: _gauges,
        ..
    } = params;
    let mut io = Io {
        tcp,
        tls: None,
        tls_ctx,
        tls_timeout,
        limits,
        parser: ParserSlot::fresh(limits),
        wbuf: Vec::new(),
        target,
        control,
        shaper: Shaper::new(read_rate, read_burst, Instant::now()),
        reading: true,
        park_at: None,
    };
    if direct_tls && let Err(e) = Box::pin(io.start_tls()).await {
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
                io.parser.park();
                Ok(())
            }
            r = shaped_readable(&io.tcp, io.shaper.as_mut()), if io.reading => match r {
                Err(e) => Err(format!("read: {e}")),
                Ok(()) => Box::pin(io.on_readable(shared, log)).await,
            },
        };
        if let Err(reason) = r {
            return (reason, io.control);
        }
    }
}

impl Io {
    async fn start_tls(&mut self) -> Result<(), String> {
        if self.tls.is_some() {
            return Err("STARTTLS on a TLS stream".into());
        }
        let (layer, cb) = handshake(&mut self.tcp, &self.tls_ctx, self.tls_timeout).await?;
        self.tls = Some(Box::new(layer));
        self.parser = ParserSlot::fresh(self.limits);
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
                    if self.wbuf.is_empty() {
                        self.wbuf = d
                    } else {
                        self.wbuf.extend_from_slice(&d)
                    }
                }
                other => {
                    flush(&self.tcp, &mut self.tls, &mut self.wbuf, shared, log).await?;
                    match other {
                        Out::StartTls => self.start_tls().await?,
                        Out::ResetParser => self.parser = ParserSlot::fresh(self.limits),
                        Out::Handover(stanzas, control) => {
                            // the old target hears it last, after all it was sent
                            let old = std::mem::replace(&mut self.control, control);
                            self.target = stanzas;
                            let _ = old.send(FromIo::HandedOver).await;
                        }
                        Out::Close => {
                            close(&mut self.tcp, &mut self.tls).await;
                            return Err("closed by server".into());
                        }
                        Out::Data(_) => {}
                    }
                }
            }
            next = shared.pop();
        }
        flush(&self.tcp, &mut self.tls, &mut self.wbuf, shared, log).await
    }

    /// The socket is readable: read, decrypt, parse, and hand the events on.
    async fn on_readable(&mut self, shared: &OutShared, log: &slog::Logger) -> Result<(), String> {
        // a shaped connection reads no more than its bucket holds
        let max = self
            .shaper
            .as_mut()
            .map_or(READ_CHUNK, |s| s.allowance(Instant::now(), 512));
        let read = read_now(
            &self.tcp,
            &mut self.tls,
            &mut self.parser,
            self.limits,
            max,
            log,
        );
        // TLS: the records the record layer wrote on its own (our KeyUpdate, an alert)
        // go out now, before anything sealed later
        if let Some(out) = self.tls.as_mut().and_then(|l| l.take_outgoing()) {
            let w = tokio::time::timeout(self.tls_timeout, write_all(&self.tcp, &out)).await;
            if read.is_ok() && !matches!(w, Ok(Ok(()))) {
                return Err("write: TLS record layer output".into());
            }
        }
        let (n, outcome) = match read {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(()),
            Err(e) => return Err(format!("read: {e}")),
        };
        if let Some(s) = self.shaper.as_mut() {
            s.consume(n, Instant::now());
        }
        self.park_at = outcome
            .clean
            .then(|| tokio::time::Instant::now() + PARK_AFTER);
        let gone = |_| "connection actor gone".to_string();
        let mut stanzas = Vec::new();
        for ev in outcome.events {
            match ev {
                StreamEvent::Stanza(el) => stanzas.push(el),
                other => {
                    if !stanzas.is_empty() {
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
            if self.tls.is_some() {
                // the peer's close_notify: what is queued for it goes out, then ours
                self.write_queued(shared, log).await?;
                close(&mut self.tcp, &mut self.tls).await;
            }
            return Err("peer closed the connection".into());
        }
        Ok(())
    }

    /// Write the data queued for the peer (up to a close), dropping other commands: the
    /// connection is ending.
    async fn write_queued(&mut self, shared: &OutShared, log: &slog::Logger) -> Result<(), String> {
        while let Some(cmd) = shared.pop() {
            match cmd {
                Out::Data(d) => self.wbuf.extend_from_slice(&d),
                Out::Close => break,
                _ => {}
            }
        }
        shared.queued.set(0);
        flush(&self.tcp, &mut self.tls, &mut self.wbuf, shared, log).await
    }
}

/// Wait until the socket is readable, after waiting as long as the shaper asks.
/// Dropping the future while it waits loses nothing (the next one asks again).
async fn shaped_readable(tcp: &TcpStream, shaper: Option<&mut Shaper>) -> std::io::Result<()> {
    if let Some(s) = shaper {
        let d = s.delay(Instant::now());
        if !d.is_zero() {
            Shaper::note_delayed();
            tokio::time::sleep(d).await;
        }
    }
    tcp.readable().await
}

/// Write everything queued (encrypted when TLS is up); the buffer is given back.
async fn flush(
    tcp: &TcpStream,
    tls: &mut Option<Box<RecordLayer>>,
    wbuf: &mut Vec<u8>,
    shared: &OutShared,
    log: &slog::Logger,
) -> Result<(), String> {
    if wbuf.is_empty() {
        return Ok(());
    }
    slog::trace!(log, # "XMPPI", "send"; "xml" => xmppd_proto::xml::log_mask::mask(wbuf));
    let plain = std::mem::take(wbuf);
    let data = match tls {
        Some(layer) => {
            let mut sealed = Vec::new();
            layer
                .seal(&plain, &mut sealed)
                .map_err(|e| format!("TLS: {e}"))?;
            sealed
        }
        None => plain,
    };
    tokio::select! {
        biased;
        _ = shared.abort.notified() => Err("aborted: peer not reading".into()),
        r = write_all(tcp, &data) => r.map_err(|e| format!("write: {e}")),
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

async fn handshake(
    tcp: &mut TcpStream,
    tls: &TlsContext,
    timeout: Duration,
) -> Result<(RecordLayer, ChannelBinding), String> {
    match tokio::time::timeout(timeout, tls.accept(tcp)).await {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(format!("TLS handshake: {e}")),
        Err(_) => Err("TLS handshake timed out".into()),
    }
}

/// Close: TLS close_notify, TCP shutdown, then give the peer a moment to close its side.
async fn close(tcp: &mut TcpStream, tls: &mut Option<Box<RecordLayer>>) {
    if let Some(layer) = tls {
        let mut alert = Vec::new();
        layer.close_notify(&mut alert);
        let _ = write_all(tcp, &alert).await;
    }
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

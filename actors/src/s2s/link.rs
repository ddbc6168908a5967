//! One outgoing server stream (the link of an outbound queue): resolve, connect,
//! STARTTLS or direct TLS, dialback, then write what the queue hands it. It runs as a
//! task beside its queue and reports what happens as [`LinkEvent`]s; the decisions it
//! follows are `xmppd_proto::s2s` (`outgoing::next`, the dialback key).

use super::resolve::{self, Target};
use super::tls::{self, CertCheck};
use crate::signals::Signal;
use actix::Recipient;
use minidom::Element;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use xmppd_proto::config::Settings;
use xmppd_proto::ns;
use xmppd_proto::s2s::dialback::{self, Answer, Dialback};
use xmppd_proto::s2s::outgoing::{self, Failure, LinkState, Step};
use xmppd_proto::stanza::ErrorCondition;
use xmppd_proto::xml::escape::escape_attr;
use xmppd_proto::xml::fast_parser::FastParser;
use xmppd_proto::xml::stream_parser::{Limits, StreamEvent};

/// Bytes gathered from the queue's buffer into one write at most (one TLS record holds
/// 16 KiB).
const WRITE_BATCH: usize = 64 * 1024;

/// SO_SNDBUF asked for on an outgoing server socket: it bounds what the kernel holds
/// for the peer, so what is lost when a link fails is bounded and known.
const SEND_BUFFER: u32 = 256 * 1024;

/// Bytes of the latest written stanzas kept after their write: Linux doubles
/// SO_SNDBUF (its bookkeeping), TLS adds its records, and one batch may be in flight.
/// When the link fails these may not have reached the peer and are bounced.
const IN_FLIGHT: usize = 2 * SEND_BUFFER as usize + 2 * WRITE_BATCH;

/// What the queue tells its link.
pub enum LinkCmd {
    /// A signal, with the time it reached the queue; the link writes it in
    /// `jabber:server` and returns it unsent when it ends first.
    Stanza(Signal, Instant),
    /// `<db:verify>` for an inbound stream's key.
    Verify { id: String, key: String },
    /// Close the stream (idle, or the queue ends).
    Close,
}

/// What the link tells its queue; `gen` tells links of the same queue apart.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct LinkEvent {
    pub generation: u64,
    pub what: Event,
}

pub enum Event {
    /// A new phase, for the queue's visible state.
    Phase(&'static str),
    /// The stream is open: dialback verifications may go.
    Open,
    /// Authenticated: stanzas may go.
    Up,
    /// The authoritative server's answer to a `<db:verify>` we sent.
    Verified {
        id: String,
        verdict: dialback::Verdict,
    },
    /// The link failed; `retry` is false when trying again cannot help (a secure
    /// domain's requirement not met).
    Failed {
        condition: ErrorCondition,
        why: String,
        retry: bool,
    },
    /// The stream ended normally (closed by either side).
    Closed,
    /// Signals the link took but did not write (or was writing when it failed), in
    /// order, with their arrival times: they wait again, first. Sent before `Failed` or
    /// `Closed`; it concerns the queue whatever link generation is current.
    Unsent(Vec<(Signal, Instant)>),
    /// Signals written within the last send buffer's worth of bytes before the link
    /// failed: the kernel may have held them when the connection died, so they may or
    /// may not have been delivered. They are bounced (never sent twice). Sent before
    /// `Failed`.
    Uncertain(Vec<Signal>),
}

/// The latest written signals, up to [`IN_FLIGHT`] bytes, with their sizes.
#[derive(Default)]
struct Recent {
    sigs: VecDeque<(Signal, usize)>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, sig: Signal, size: usize) {
        self.sigs.push_back((sig, size));
        self.bytes += size;
        while self.bytes > IN_FLIGHT {
            match self.sigs.pop_front() {
                Some((_, n)) => self.bytes -= n,
                None => break,
            }
        }
    }
}

pub struct LinkParams {
    pub remote: String,
    pub local: String,
    pub settings: Arc<Settings>,
    pub secret: Arc<[u8]>,
    pub secure: bool,
    /// Our certificate for the local domain, presented as the TLS client certificate.
    pub ours: Option<Arc<rustls::sign::CertifiedKey>>,
    /// Our certificate validates for the local domain: SASL EXTERNAL may work.
    pub can_external: bool,
    pub generation: u64,
    pub log: slog::Logger,
}

struct Fail {
    condition: ErrorCondition,
    why: String,
    retry: bool,
}

impl Fail {
    fn timeout(why: impl Into<String>) -> Fail {
        Fail {
            condition: ErrorCondition::RemoteServerTimeout,
            why: why.into(),
            retry: true,
        }
    }

    fn policy(f: Failure) -> Fail {
        Fail {
            condition: ErrorCondition::RemoteServerTimeout,
            why: f.as_str().to_string(),
            retry: false,
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Gone,
}

/// The connection and its parser.
struct Wire {
    io: Io,
    parser: FastParser,
    limits: Limits,
    events: VecDeque<StreamEvent>,
    buf: Vec<u8>,
    /// How long one write may wait for the peer to read (`s2s.write_timeout`).
    write_timeout: Duration,
}

impl Wire {
    fn new(io: Io, limits: Limits, write_timeout: Duration) -> Wire {
        Wire {
            io,
            parser: FastParser::new(limits),
            limits,
            events: VecDeque::new(),
            buf: vec![0; 16 * 1024],
            write_timeout,
        }
    }

    /// Write and flush `b`; a peer that does not take it within the write timeout
    /// fails the link.
    async fn write(&mut self, b: &[u8]) -> Result<(), Fail> {
        let limit = self.write_timeout;
        match tokio::time::timeout(limit, self.write_unbounded(b)).await {
            Ok(r) => r,
            Err(_) => Err(Fail::timeout(format!(
                "write timed out: the peer read nothing for {} s",
                limit.as_secs()
            ))),
        }
    }

    async fn write_unbounded(&mut self, b: &[u8]) -> Result<(), Fail> {
        let r = match &mut self.io {
            Io::Plain(s) => s.write_all(b).await,
            Io::Tls(s) => match s.write_all(b).await {
                Ok(()) => s.flush().await,
                Err(e) => Err(e),
            },
            Io::Gone => return Err(Fail::timeout("connection gone")),
        };
        r.map_err(|e| Fail::timeout(format!("write: {e}")))
    }

    /// The next stream event (cancel-safe: bytes are fed to the parser as soon as read).
    async fn next(&mut self) -> Result<StreamEvent, Fail> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Ok(e);
            }
            let n = match &mut self.io {
                Io::Plain(s) => s.read(&mut self.buf).await,
                Io::Tls(s) => s.read(&mut self.buf).await,
                Io::Gone => return Err(Fail::timeout("connection gone")),
            }
            .map_err(|e| Fail::timeout(format!("read: {e}")))?;
            if n == 0 {
                return Err(Fail::timeout("the peer closed the connection"));
            }
            let mut out = Vec::new();
            self.parser
                .feed(&self.buf[..n], &mut out)
                .map_err(|e| Fail::timeout(format!("the peer sent bad XML: {e}")))?;
            self.events.extend(out);
        }
    }

    async fn element(&mut self) -> Result<Element, Fail> {
        match self.next().await? {
            StreamEvent::Stanza(el) => Ok(el),
            StreamEvent::Header(_) => Err(Fail::timeout("unexpected stream header")),
            StreamEvent::End => Err(Fail::timeout("the peer closed the stream")),
        }
    }

    async fn start_tls(&mut self, cfg: Arc<rustls::ClientConfig>, name: &str) -> Result<(), Fail> {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            return Err(Fail::timeout("TLS is already up"));
        };
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
            .map_err(|_| Fail::timeout("the domain is not a DNS name"))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(server_name, tcp)
            .await
            .map_err(|e| Fail::timeout(format!("TLS handshake: {e}")))?;
        self.io = Io::Tls(Box::new(tls));
        self.parser = FastParser::new(self.limits);
        self.events.clear();
        Ok(())
    }

    async fn shutdown(&mut self) {
        let _ = self.write(b"</stream:stream>").await;
        match &mut self.io {
            Io::Plain(s) => {
                let _ = s.shutdown().await;
            }
            Io::Tls(s) => {
                let _ = s.shutdown().await;
            }
            Io::Gone => {}
        }
    }
}

/// Run a link until it fails or closes; every outcome is reported.
pub async fn run(p: LinkParams, mut cmds: Receiver<LinkCmd>, events: Recipient<LinkEvent>) {
    let generation = p.generation;
    let tell = |what: Event| {
        events.do_send(LinkEvent { generation, what });
    };
    let mut writing = Vec::new();
    let mut recent = Recent::default();
    let outcome = link(&p, &mut cmds, &tell, &mut writing, &mut recent).await;
    // nothing the queue handed over is dropped: what is left goes back
    cmds.close();
    let mut unsent: Vec<(Signal, Instant)> = writing;
    while let Ok(cmd) = cmds.try_recv() {
        if let LinkCmd::Stanza(sig, at) = cmd {
            unsent.push((sig, at));
        }
    }
    if !unsent.is_empty() {
        tell(Event::Unsent(unsent));
    }
    match outcome {
        Ok(()) => tell(Event::Closed),
        Err(f) => {
            if !recent.sigs.is_empty() {
                tell(Event::Uncertain(
                    recent.sigs.into_iter().map(|(s, _)| s).collect(),
                ));
            }
            slog::info!(p.log, # "XMPPO", "outgoing stream failed"; "remote" => &p.remote, "why" => &f.why);
            tell(Event::Failed {
                condition: f.condition,
                why: f.why,
                retry: f.retry,
            })
        }
    }
}

async fn connect(p: &LinkParams, tell: &impl Fn(Event)) -> Result<(TcpStream, Target), Fail> {
    tell(Event::Phase("resolving"));
    let targets = resolve::targets(&p.settings, &p.remote).await;
    let mut found = false;
    // one address that never answers must not use up the whole connect_timeout: each
    // attempt has its own bound, then the next address is tried
    let timeout = Duration::from_secs(
        p.settings
            .s2s
            .connect_attempt_timeout
            .clamp(1, p.settings.s2s.connect_timeout.max(1)),
    );
    tell(Event::Phase("connecting"));
    for t in targets {
        for addr in resolve::addresses(&p.settings, &t).await {
            found = true;
            slog::debug!(p.log, # "XMPPO", "connecting"; "remote" => &p.remote, "address" => %addr);
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()
            } else {
                tokio::net::TcpSocket::new_v6()
            };
            let socket = match socket {
                Ok(s) => s,
                Err(e) => {
                    slog::debug!(p.log, # "XMPPO", "no socket"; "remote" => &p.remote, "error" => %e);
                    continue;
                }
            };
            // bounded: what the kernel holds for the peer is what a failure may lose
            let _ = socket.set_send_buffer_size(SEND_BUFFER);
            match tokio::time::timeout(timeout, socket.connect(addr)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, t));
                }
                Ok(Err(e)) => {
                    slog::debug!(p.log, # "XMPPO", "connect failed"; "remote" => &p.remote, "address" => %addr, "error" => %e);
                }
                Err(_) => {
                    slog::debug!(p.log, # "XMPPO", "connect timed out, trying the next address"; "remote" => &p.remote, "address" => %addr);
                }
            }
        }
    }
    if found {
        Err(Fail::timeout("cannot connect to the remote server"))
    } else {
        Err(Fail {
            condition: ErrorCondition::RemoteServerNotFound,
            why: "the remote domain does not resolve".into(),
            retry: true,
        })
    }
}

/// The certificate check's outcome as a failure, for a secure domain.
fn cert_failure(c: CertCheck) -> Option<Failure> {
    match c {
        CertCheck::Valid => None,
        CertCheck::WrongName => Some(Failure::WrongName),
        CertCheck::Untrusted | CertCheck::None => Some(Failure::UntrustedCertificate),
    }
}

async fn link(
    p: &LinkParams,
    cmds: &mut Receiver<LinkCmd>,
    tell: &impl Fn(Event),
    writing: &mut Vec<(Signal, Instant)>,
    recent: &mut Recent,
) -> Result<(), Fail> {
    let mut out = Vec::with_capacity(WRITE_BATCH);
    let mut sizes: Vec<usize> = Vec::new();
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(p.settings.s2s.connect_timeout.max(1));
    let negotiated = tokio::time::timeout_at(deadline, negotiate(p, tell)).await;
    let (mut wire, id, mut authed) = match negotiated {
        Ok(r) => r?,
        Err(_) => return Err(Fail::timeout("the remote server took too long")),
    };
    tell(Event::Open);
    if authed {
        slog::info!(p.log, # "XMPPO", "outgoing stream authenticated (SASL EXTERNAL)"; "remote" => &p.remote, "local" => &p.local);
        tell(Event::Up);
    } else {
        tell(Event::Phase("authenticating"));
        let key = dialback::key(&p.secret, &p.remote, &p.local, &id);
        wire.write(dialback::result_request(&p.local, &p.remote, &key).as_bytes())
            .await?;
    }
    let auth_timer = tokio::time::sleep_until(deadline + Duration::from_secs(10));
    tokio::pin!(auth_timer);
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(first) = cmd else {
                    wire.shutdown().await;
                    return Ok(());
                };
                // everything the queue handed over meanwhile goes out in one write
                // (one syscall, one TLS record flush), up to WRITE_BATCH bytes
                let mut close = false;
                out.clear();
                let mut next = Some(first);
                while let Some(cmd) = next.take() {
                    match cmd {
                        LinkCmd::Stanza(sig, at) => {
                            // jabber:client elements written without their namespace
                            // read as jabber:server on this stream: no renamed copy
                            let before = out.len();
                            xmppd_proto::xml::writer::append_in(sig.stanza(), ns::CLIENT, &mut out);
                            sizes.push(out.len() - before);
                            // kept until written: a failed write returns them to the queue
                            writing.push((sig, at));
                        }
                        LinkCmd::Verify { id, key } => out.extend_from_slice(
                            dialback::verify_request(&p.local, &p.remote, &id, &key).as_bytes(),
                        ),
                        LinkCmd::Close => {
                            close = true;
                            break;
                        }
                    }
                    if out.len() < WRITE_BATCH {
                        next = cmds.try_recv().ok();
                    }
                }
                if !out.is_empty() {
                    wire.write(&out).await?;
                }
                for ((sig, _), n) in writing.drain(..).zip(sizes.drain(..)) {
                    recent.push(sig, n);
                }
                if close {
                    wire.shutdown().await;
                    return Ok(());
                }
            },
            ev = wire.next() => match ev? {
                StreamEvent::Stanza(el) => {
                    if el.is("error", ns::STREAM) {
                        let why = xmppd_proto::xml::writer::to_string(&el);
                        return Err(Fail::timeout(format!("stream error from the peer: {why}")));
                    }
                    match Dialback::parse(&el) {
                        Ok(Dialback::ResultAnswer { from, to, answer })
                            if from == p.remote && to == p.local =>
                        {
                            match answer {
                                Answer::Valid => {}
                                Answer::Invalid => {
                                    return Err(Fail::timeout("the remote server refused our dialback"));
                                }
                                // XEP-0220 §2.4: it could not check our key (it cannot
                                // reach us, or does not serve the domain): this pair
                                // fails for now, it was not refused; what waits is
                                // retried within bounce_after
                                Answer::Error(cond) => {
                                    return Err(Fail::timeout(format!(
                                        "the remote server could not verify our dialback key ({cond})"
                                    )));
                                }
                            }
                            if !authed {
                                authed = true;
                                slog::info!(p.log, # "XMPPO", "outgoing stream authenticated"; "remote" => &p.remote, "local" => &p.local);
                                tell(Event::Up);
                            }
                        }
                        Ok(Dialback::VerifyAnswer { id, answer, .. }) => tell(Event::Verified {
                            id,
                            verdict: dialback::Verdict::of(&answer),
                        }),
                        _ => {
                            slog::debug!(p.log, # "XMPPO", "ignored on an outgoing stream"; "element" => el.name());
                        }
                    }
                }
                StreamEvent::End => {
                    wire.shutdown().await;
                    return if authed { Ok(()) } else { Err(Fail::timeout("the peer closed the stream")) };
                }
                StreamEvent::Header(_) => return Err(Fail::timeout("unexpected stream header")),
            },
            _ = &mut auth_timer, if !authed => {
                return Err(Fail::timeout("dialback took too long"));
            }
        }
    }
}

/// Connect, open the stream, STARTTLS when offered (or required), SASL EXTERNAL when
/// offered and possible, up to the point where dialback starts. Returns the wire, the
/// peer's stream id, and whether SASL EXTERNAL authenticated the stream already.
async fn negotiate(p: &LinkParams, tell: &impl Fn(Event)) -> Result<(Wire, String, bool), Fail> {
    let (tcp, target) = connect(p, tell).await?;
    let limits = Limits {
        max_stanza: p.settings.limits.max_stanza_size,
        max_depth: p.settings.limits.max_depth,
        ..Limits::default()
    };
    let write_timeout = Duration::from_secs(p.settings.s2s.write_timeout.max(1));
    let mut wire = Wire::new(Io::Plain(tcp), limits, write_timeout);
    let roots = tls::roots(&p.settings.s2s.trusted_certificates);
    let mut state = LinkState {
        secure: p.secure,
        can_external: p.can_external,
        ..LinkState::default()
    };
    let mut external_done = false;
    let tls_config = || {
        tls::client_config(roots.clone(), target.relay.as_deref(), p.ours.clone())
            .map_err(|e| Fail::timeout(format!("TLS configuration: {e}")))
    };
    if target.direct_tls {
        let (cfg, outcome) = tls_config()?;
        wire.start_tls(cfg, &p.remote).await?;
        state.tls = true;
        let check = outcome.lock().map(|c| *c).unwrap_or(CertCheck::None);
        state.cert_valid = check == CertCheck::Valid;
        if p.secure
            && let Some(f) = cert_failure(check)
        {
            return Err(Fail::policy(f));
        }
    }
    loop {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' xmlns:db='{}' \
             from='{}' to='{}' version='1.0'>",
            ns::SERVER,
            ns::STREAM,
            ns::DIALBACK,
            escape_attr(&p.local),
            escape_attr(&p.remote)
        );
        wire.write(header.as_bytes()).await?;
        let id = match wire.next().await? {
            StreamEvent::Header(h) => h.id.unwrap_or_default(),
            _ => return Err(Fail::timeout("no stream header from the peer")),
        };
        let features = wire.element().await?;
        if features.is("error", ns::STREAM) {
            let why = xmppd_proto::xml::writer::to_string(&features);
            return Err(Fail::timeout(format!("stream error from the peer: {why}")));
        }
        if external_done {
            return Ok((wire, id, true));
        }
        match outgoing::next(&features, state) {
            Step::StartTls => {
                tell(Event::Phase("tls"));
                wire.write(format!("<starttls xmlns='{}'/>", ns::TLS).as_bytes())
                    .await?;
                let answer = wire.element().await?;
                if !answer.is("proceed", ns::TLS) {
                    return Err(if p.secure {
                        Fail::policy(Failure::NoStartTls)
                    } else {
                        Fail::timeout("the peer refused STARTTLS")
                    });
                }
                let (cfg, outcome) = tls_config()?;
                wire.start_tls(cfg, &p.remote).await?;
                state.tls = true;
                let check = outcome.lock().map(|c| *c).unwrap_or(CertCheck::None);
                state.cert_valid = check == CertCheck::Valid;
                slog::debug!(p.log, # "XMPPO", "TLS established"; "remote" => &p.remote, "certificate" => ?check);
                if p.secure
                    && let Some(f) = cert_failure(check)
                {
                    return Err(Fail::policy(f));
                }
            }
            Step::External => {
                use base64::Engine;
                let authzid = base64::engine::general_purpose::STANDARD.encode(&p.local);
                wire.write(
                    format!(
                        "<auth xmlns='{}' mechanism='EXTERNAL'>{authzid}</auth>",
                        ns::SASL
                    )
                    .as_bytes(),
                )
                .await?;
                let answer = wire.element().await?;
                if answer.is("success", ns::SASL) {
                    // RFC 6120 §6.4.6: a new stream over the same connection
                    external_done = true;
                    wire.parser = FastParser::new(wire.limits);
                    wire.events.clear();
                    continue;
                }
                // the peer does not accept our certificate: dialback on this stream
                slog::debug!(p.log, # "XMPPO", "SASL EXTERNAL refused, trying dialback"; "remote" => &p.remote);
                return Ok((wire, id, false));
            }
            Step::Dialback => return Ok((wire, id, false)),
            Step::Fail(f) => {
                return Err(if p.secure && f == Failure::NoStartTls {
                    Fail::policy(f)
                } else {
                    Fail::timeout(f.as_str())
                });
            }
        }
    }
}

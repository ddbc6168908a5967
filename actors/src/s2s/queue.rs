//! The `OutboundQueue` actor: one per (remote domain, local domain) pair, started on
//! demand by the registry. It keeps the signals waiting for the remote domain, runs a
//! [`link`](super::link) to it, hands the link the signals in order once it is
//! authenticated, retries with backoff while the peer is unreachable, bounces what waited
//! longer than `s2s.bounce_after` (and what does not fit in `s2s.queue_limit`) to its
//! sender, and closes the link after `s2s.idle_timeout` without traffic.

use super::link::{self, Event, LinkCmd, LinkEvent, LinkParams};
use crate::context::Ctx;
use crate::signals::to_outbound::{OutboundIdle, QueueInfo, QueueState, Verify};
use crate::signals::{OutboundRef, Signal, ToOutbound};
use actix::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Sender;
use xmppd_proto::s2s::dialback::Verdict;
use xmppd_proto::s2s::{retry, routes};
use xmppd_proto::stanza::ErrorCondition;

/// Signals the queue's mailbox holds before the registry bounces them.
const MAILBOX: usize = 4096;
/// Stanzas and commands buffered between the queue and its link; beyond it, signals
/// wait in the queue (the peer reads slowly).
const LINK_BUFFER: usize = 256;
/// Dialback verifications waiting for a link at most.
const MAX_VERIFIES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    /// A link runs; the phase it reported.
    Linking(&'static str),
    Connected,
    BackingOff,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Linking(p) => p,
            State::Connected => "connected",
            State::BackingOff => "backing-off",
        }
    }
}

pub struct OutboundQueue {
    remote: String,
    local: String,
    ctx: Ctx,
    log: slog::Logger,
    state: State,
    /// Signals waiting for the link, with the time each arrived.
    pending: VecDeque<(Signal, Instant)>,
    link: Option<Sender<LinkCmd>>,
    generation: u64,
    /// Verifications waiting for the stream to open, then for their answer.
    verifies: Vec<Verify>,
    asked: HashMap<String, Vec<tokio::sync::oneshot::Sender<Verdict>>>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// A secure domain's requirement failed: signals are refused with this until the
    /// next attempt.
    refusing: Option<(ErrorCondition, String)>,
    /// Why the last attempt failed: what waiting signals are bounced with.
    last_failure: Option<(ErrorCondition, String)>,
    last_used: Instant,
    /// Asked the registry to forget this queue (idle); the stop follows its answer.
    retiring: bool,
    /// Waiting for room in the link's buffer: what waits is handed over as soon as
    /// there is (not only at the next tick).
    awaiting_room: bool,
    sent: u64,
    bounced: u64,
}

/// The process's dialback secret: the configured one, or random.
fn secret(configured: &str) -> Arc<[u8]> {
    static RANDOM: OnceLock<Arc<[u8]>> = OnceLock::new();
    if !configured.is_empty() {
        return Arc::from(configured.as_bytes());
    }
    RANDOM
        .get_or_init(|| {
            let b: [u8; 32] = rand::random();
            Arc::from(&b[..])
        })
        .clone()
}

/// The dialback key we give for (receiving = remote, originating = local, stream id):
/// what an inbound `db:verify` is checked against.
pub fn dialback_key(ctx: &Ctx, remote: &str, local: &str, id: &str) -> String {
    let s = secret(&ctx.settings.get().s2s.dialback_secret);
    xmppd_proto::s2s::dialback::key(&s, remote, local, id)
}

/// Check a key received in `db:verify` (we are the authoritative server for `local`).
pub fn dialback_key_matches(ctx: &Ctx, remote: &str, local: &str, id: &str, key: &str) -> bool {
    let s = secret(&ctx.settings.get().s2s.dialback_secret);
    xmppd_proto::s2s::dialback::key_matches(&s, remote, local, id, key)
}

impl OutboundQueue {
    /// Start the queue for (remote, local) on the given arbiter (or the current one).
    pub fn start(
        remote: String,
        local: String,
        ctx: Ctx,
        arbiter: Option<&ArbiterHandle>,
    ) -> OutboundRef {
        let log = ctx
            .log
            .new(slog::o!("remote" => remote.clone(), "local" => local.clone()));
        let q = OutboundQueue {
            remote,
            local,
            ctx,
            log,
            state: State::Idle,
            pending: VecDeque::new(),
            link: None,
            generation: 0,
            verifies: Vec::new(),
            asked: HashMap::new(),
            backoff: Duration::ZERO,
            retry_at: None,
            refusing: None,
            last_failure: None,
            last_used: Instant::now(),
            retiring: false,
            awaiting_room: false,
            sent: 0,
            bounced: 0,
        };
        let addr = match arbiter {
            Some(a) => OutboundQueue::start_in_arbiter(a, |_| q),
            None => q.start(),
        };
        OutboundRef {
            send: addr.clone().recipient(),
            state: addr.recipient(),
        }
    }

    fn bounce(&mut self, sig: Signal, cond: ErrorCondition, text: &str) {
        slog::warn!(self.log, # "XMPPO", "signal not delivered"; "from" => %sig.from(), "to" => %sig.to(), "error" => cond.as_str(), "why" => text);
        self.bounced += 1;
        if let Some(err) = sig.bounce(cond, Some(text)) {
            self.ctx.registry.route(err);
        }
    }

    /// Hand a signal to the link (connected), behind any that wait; when the link's
    /// buffer is full it waits too, within `queue_limit`.
    fn write(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        if self.pending.is_empty() && self.try_hand(&sig, Instant::now()) {
            return;
        }
        self.enqueue(sig);
        self.wait_for_room(ctx);
    }

    /// Hand over what waits, and if some still waits on a connected link, do it again
    /// as soon as the link's buffer has room: a link that fell behind for a moment
    /// must not leave the queue handing over one buffer's worth per tick.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.flush();
        self.wait_for_room(ctx);
    }

    fn wait_for_room(&mut self, ctx: &mut Context<Self>) {
        if self.awaiting_room || self.pending.is_empty() || self.state != State::Connected {
            return;
        }
        let Some(l) = self.link.clone() else { return };
        self.awaiting_room = true;
        let room = async move {
            // the permit is given back at once: the queue fills the room itself
            let _ = l.reserve().await;
        };
        ctx.spawn(room.into_actor(self).map(|_, q, ctx| {
            q.awaiting_room = false;
            q.pump(ctx);
        }));
    }

    /// Put a signal in the link's buffer; false when it is full or gone.
    fn try_hand(&mut self, sig: &Signal, at: Instant) -> bool {
        let Some(l) = &self.link else { return false };
        if l.try_send(LinkCmd::Stanza(sig.clone(), at)).is_err() {
            return false;
        }
        self.sent += 1;
        self.last_used = Instant::now();
        true
    }

    /// Hand the link what waits, in order, as long as its buffer takes it.
    fn flush(&mut self) {
        while self.state == State::Connected {
            let Some((sig, at)) = self.pending.front() else {
                break;
            };
            let (sig, at) = (sig.clone(), *at);
            if !self.try_hand(&sig, at) {
                break;
            }
            self.pending.pop_front();
        }
    }

    /// Wait for the link, unless `queue_limit` signals wait already (then bounced).
    fn enqueue(&mut self, sig: Signal) {
        let limit = self.ctx.settings.get().s2s.queue_limit;
        if self.pending.len() >= limit {
            return self.bounce(
                sig,
                ErrorCondition::ResourceConstraint,
                "too many stanzas wait for this server",
            );
        }
        self.pending.push_back((sig, Instant::now()));
        self.last_used = Instant::now();
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.link.is_some() {
            return;
        }
        let settings = self.ctx.settings.get();
        self.generation += 1;
        self.retry_at = None;
        let (tx, rx) = tokio::sync::mpsc::channel(LINK_BUFFER);
        let ours = self.ctx.tls.certified_key(Some(&self.local));
        let can_external = super::tls::check_chain(
            super::tls::roots(&settings.s2s.trusted_certificates),
            &ours.cert,
            &[&self.local],
        ) == super::tls::CertCheck::Valid;
        let params = LinkParams {
            ours: Some(ours),
            can_external,
            secure: routes::listed(&settings.s2s.secure_domains, &self.remote),
            secret: secret(&settings.s2s.dialback_secret),
            remote: self.remote.clone(),
            local: self.local.clone(),
            settings,
            generation: self.generation,
            log: self.log.clone(),
        };
        self.link = Some(tx);
        self.state = State::Linking("resolving");
        actix::spawn(link::run(params, rx, ctx.address().recipient()));
    }

    /// Bounce what waited too long; with `all`, everything waiting.
    fn expire(&mut self, cond: ErrorCondition, why: &str, all: bool) {
        let limit = Duration::from_secs(self.ctx.settings.get().s2s.bounce_after);
        let n = if all {
            self.pending.len()
        } else {
            retry::expired(
                self.pending.iter().map(|(_, at)| *at),
                Instant::now(),
                limit,
            )
        };
        for (sig, _) in self.pending.drain(..n).collect::<Vec<_>>() {
            self.bounce(sig, cond, why);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let settings = self.ctx.settings.get();
        self.pump(ctx);
        if !self.pending.is_empty() {
            // not connected, or connected to a peer that does not read
            let (cond, why) = self
                .refusing
                .clone()
                .or_else(|| self.last_failure.clone())
                .unwrap_or((
                    ErrorCondition::RemoteServerTimeout,
                    "the remote server cannot be reached".into(),
                ));
            self.expire(cond, &why, false);
        }
        let now = Instant::now();
        if self.state == State::BackingOff
            && self.retry_at.is_some_and(|t| now >= t)
            && (!self.pending.is_empty() || !self.verifies.is_empty())
        {
            self.connect(ctx);
        }
        let idle = Duration::from_secs(settings.s2s.idle_timeout.max(1));
        if self.state == State::Connected
            && self.pending.is_empty()
            && now.duration_since(self.last_used) >= idle
        {
            slog::debug!(self.log, # "XMPPO", "closing an idle outgoing stream");
            if let Some(l) = self.link.take() {
                let _ = l.try_send(LinkCmd::Close);
            }
            self.state = State::Idle;
        }
        if matches!(self.state, State::Idle | State::BackingOff)
            && self.link.is_none()
            && self.pending.is_empty()
            && self.verifies.is_empty()
            && now.duration_since(self.last_used) >= idle
        {
            self.retire(ctx);
        }
    }

    /// Idle: ask the registry to forget this queue, then stop behind whatever the
    /// registry sent meanwhile (a signal in a stopping mailbox would be lost).
    fn retire(&mut self, ctx: &mut Context<Self>) {
        if self.retiring {
            return;
        }
        self.retiring = true;
        let idle = OutboundIdle {
            remote: self.remote.clone(),
            local: self.local.clone(),
            send: ctx.address().recipient(),
        };
        self.ctx
            .registry
            .outbound_idle
            .send(idle)
            .into_actor(self)
            .map(|r, q, ctx| match r {
                Ok(()) => ctx.address().do_send(StopIdle),
                Err(_) => q.retiring = false,
            })
            .spawn(ctx);
    }

    /// Nothing waits and no link runs.
    fn unused(&self) -> bool {
        self.link.is_none()
            && self.pending.is_empty()
            && self.verifies.is_empty()
            && self.asked.is_empty()
    }
}

/// The registry forgot this idle queue: it stops unless work arrived meanwhile (then it
/// finishes that, unregistered, and asks again when idle).
#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopIdle;

impl Handler<StopIdle> for OutboundQueue {
    type Result = ();
    fn handle(&mut self, _: StopIdle, ctx: &mut Context<Self>) {
        self.retiring = false;
        if self.unused() {
            ctx.stop();
        }
    }
}

impl Actor for OutboundQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        ctx.run_interval(Duration::from_secs(1), |q, ctx| q.tick(ctx));
        // at shutdown the outgoing stream is closed properly; what waits is bounced
        // when the actor stops
        self.ctx.clone().on_shutdown(ctx, |q: &mut Self| {
            if let Some(l) = q.link.take() {
                let _ = l.try_send(LinkCmd::Close);
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // nothing waiting is dropped without an answer
        self.expire(
            ErrorCondition::RemoteServerTimeout,
            "the outbound queue ended",
            true,
        );
    }
}

impl Handler<ToOutbound> for OutboundQueue {
    type Result = ();
    fn handle(&mut self, m: ToOutbound, ctx: &mut Context<Self>) {
        match m {
            ToOutbound::Signal(sig) => {
                if let Some((cond, why)) = self.refusing.clone() {
                    // a secure domain's check failed: refused until the backoff is
                    // over, then this signal makes the next attempt
                    if self.retry_at.is_none_or(|t| Instant::now() < t) {
                        return self.bounce(sig, cond, &why);
                    }
                    self.refusing = None;
                }
                if self.state == State::Connected {
                    return self.write(sig, ctx);
                }
                self.enqueue(sig);
                let retry_due = self.retry_at.is_none_or(|t| Instant::now() >= t);
                if self.state == State::Idle || (self.state == State::BackingOff && retry_due) {
                    self.connect(ctx);
                }
            }
            ToOutbound::Verify(v) => {
                // the inbound streams that gave up waiting (verify_timeout) or ended
                // no longer count against the bound
                self.asked.retain(|_, rs| {
                    rs.retain(|r| !r.is_closed());
                    !rs.is_empty()
                });
                self.verifies.retain(|v| !v.reply.is_closed());
                if self.verifies.len() + self.asked.len() >= MAX_VERIFIES {
                    let _ = v.reply.send(Verdict::Busy);
                    return;
                }
                let open = matches!(
                    self.state,
                    State::Connected | State::Linking("authenticating")
                );
                match (&self.link, open) {
                    (Some(l), true) => {
                        let cmd = LinkCmd::Verify {
                            id: v.id.clone(),
                            key: v.key,
                        };
                        if l.try_send(cmd).is_ok() {
                            self.asked.entry(v.id).or_default().push(v.reply);
                        } else {
                            // the link's buffer is full: not asked
                            let _ = v.reply.send(Verdict::Busy);
                        }
                    }
                    _ => {
                        self.verifies.push(v);
                        if self.state == State::Idle || self.state == State::BackingOff {
                            self.connect(ctx);
                        }
                    }
                }
            }
        }
    }
}

impl Handler<LinkEvent> for OutboundQueue {
    type Result = ();
    fn handle(&mut self, e: LinkEvent, ctx: &mut Context<Self>) {
        if let Event::Unsent(signals) = e.what {
            // a link ended with signals it took: they wait again, first, in order
            // (within bounce_after from their arrival; queue_limit does not refuse them)
            self.sent = self.sent.saturating_sub(signals.len() as u64);
            for s in signals.into_iter().rev() {
                self.pending.push_front(s);
            }
            self.last_used = Instant::now();
            if self.state == State::Connected {
                self.pump(ctx);
            } else if self.link.is_none() && self.retry_at.is_none_or(|t| Instant::now() >= t) {
                self.connect(ctx);
            }
            return;
        }
        if let Event::Uncertain(signals) = e.what {
            // written just before the link failed: perhaps delivered, perhaps not;
            // the sender is told rather than the peer getting them twice
            for s in signals {
                self.bounce(
                    s,
                    ErrorCondition::RemoteServerTimeout,
                    "may not have been delivered: the server-to-server link failed after it was written",
                );
            }
            return;
        }
        if e.generation != self.generation {
            return;
        }
        match e.what {
            Event::Phase(p) => self.state = State::Linking(p),
            Event::Open => {
                self.state = State::Linking("authenticating");
                if let Some(l) = &self.link {
                    for v in self.verifies.drain(..) {
                        let cmd = LinkCmd::Verify {
                            id: v.id.clone(),
                            key: v.key,
                        };
                        if l.try_send(cmd).is_ok() {
                            self.asked.entry(v.id).or_default().push(v.reply);
                        } else {
                            let _ = v.reply.send(Verdict::Busy);
                        }
                    }
                }
            }
            Event::Up => {
                self.state = State::Connected;
                self.backoff = Duration::ZERO;
                self.refusing = None;
                self.last_failure = None;
                self.last_used = Instant::now();
                self.pump(ctx);
            }
            Event::Verified { id, verdict } => {
                for r in self.asked.remove(&id).unwrap_or_default() {
                    let _ = r.send(verdict);
                }
            }
            Event::Failed {
                condition,
                why,
                retry,
            } => {
                self.link = None;
                // unanswered verifications: the authoritative server is out of reach
                // (XEP-0220 §2.4: an error, not "invalid")
                for r in self.asked.drain().flat_map(|(_, rs)| rs) {
                    let _ = r.send(Verdict::Unreachable);
                }
                for v in self.verifies.drain(..) {
                    let _ = v.reply.send(Verdict::Unreachable);
                }
                let s = self.ctx.settings.get();
                self.backoff = retry::next_backoff(
                    self.backoff,
                    Duration::from_secs(s.s2s.retry_initial),
                    Duration::from_secs(s.s2s.retry_max),
                );
                self.retry_at = Some(Instant::now() + self.backoff);
                self.state = State::BackingOff;
                self.last_failure = Some((condition, why.clone()));
                if retry {
                    self.refusing = None;
                    self.expire(condition, &why, false);
                } else {
                    // a secure domain's requirement failed: nothing waits for it
                    self.expire(condition, &why, true);
                    self.refusing = Some((condition, why));
                }
                let _ = ctx;
            }
            Event::Unsent(_) | Event::Uncertain(_) => {}
            Event::Closed => {
                self.link = None;
                for r in self.asked.drain().flat_map(|(_, rs)| rs) {
                    let _ = r.send(Verdict::Unreachable);
                }
                self.state = State::Idle;
                if !self.pending.is_empty() || !self.verifies.is_empty() {
                    self.connect(ctx);
                }
            }
        }
    }
}

impl Handler<QueueState> for OutboundQueue {
    type Result = MessageResult<QueueState>;
    fn handle(&mut self, _: QueueState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(QueueInfo {
            remote: self.remote.clone(),
            local: self.local.clone(),
            state: self.state.name(),
            pending: self.pending.len(),
            sent: self.sent,
            bounced: self.bounced,
        })
    }
}

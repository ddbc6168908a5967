//! The registry (the "real-time component"): the routing table of the server.
//!
//! It knows the hosted domains and every bound session, resolves the `to` of each
//! signal and hands it to the session that takes it, answers what is addressed to the
//! server, and returns what cannot be delivered to its sender as an error.

mod accounts;
mod admin;
pub mod domains;
mod outbound;
mod remove;
pub mod routes;
mod waiting;

use crate::context::Ctx;
use crate::features::{self, Entity, Env, Who};
use crate::signals::to_registry::{
    AccountIdle, AttachComponent, AttachError, Availability, Bind, BindError, DetachService,
    Dismiss, Dismissal, FromSession, ListSessions, SessionInfo, SetDomains, Unbind,
};
use crate::signals::{
    AccountRef, OutboundRef, SessionRef, Signal, ToAccount, ToOutbound, ToSession,
};
use actix::prelude::*;
use domains::{Domain, DomainTable, Service, ServiceKind};
use outbound::NoQueue;
use routes::{Route, RouteTable, RouteUpdate};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmppd_proto::stanza::ErrorCondition;

/// Starts the account actor of a bare JID (on the given arbiter, if any). The registry
/// is handed one at start, so that it needs nothing of the account actor but its address.
pub type AccountStarter =
    Arc<dyn Fn(BareJid, Ctx, Option<&ArbiterHandle>) -> AccountRef + Send + Sync>;

/// Starts the outbound queue of a (remote domain, local domain) pair on the given
/// arbiter (federation); handed to the registry at start like [`AccountStarter`].
pub type OutboundStarter =
    Arc<dyn Fn(String, String, Ctx, Option<&ArbiterHandle>) -> OutboundRef + Send + Sync>;

pub struct Registry {
    domains: DomainTable,
    /// Outbound queues by (remote domain, local domain), started on first need.
    outbound: HashMap<(String, String), OutboundRef>,
    start_outbound: Option<OutboundStarter>,
    /// The authoritative table; every change is also sent to the replicas.
    routes: RouteTable,
    replicas: Vec<Recipient<RouteUpdate>>,
    /// Account actors, started on first need (a session binds, or a signal arrives).
    accounts: HashMap<BareJid, AccountRef>,
    start_account: Option<AccountStarter>,
    log: slog::Logger,
    /// Set once at start ([`Init`]); accounts need it.
    ctx: Option<Ctx>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    /// Signals waiting for account actors whose mailbox is full.
    waiting: waiting::Waiting,
    /// This actor, to hand waiting signals over later.
    me: Option<actix::WeakAddr<Registry>>,
    /// The backlog of the client session whose signal is being routed (a signal of it
    /// that has to wait holds the session back).
    sender: Option<Arc<crate::signals::backlog::Backlog>>,
}

impl Registry {
    pub fn new(domains: impl IntoIterator<Item = String>, log: slog::Logger) -> Self {
        Registry {
            domains: DomainTable::new(domains),
            outbound: HashMap::new(),
            start_outbound: None,
            routes: RouteTable::default(),
            replicas: Vec::new(),
            accounts: HashMap::new(),
            start_account: None,
            log,
            ctx: None,
            workers: Vec::new(),
            next_worker: 0,
            waiting: waiting::Waiting::default(),
            me: None,
            sender: None,
        }
    }

    fn bounce(&mut self, sig: Signal, cond: ErrorCondition, text: Option<&str>) {
        slog::warn!(self.log, "signal not delivered"; "from" => %sig.from(), "to" => %sig.to(), "error" => cond.as_str());
        if let Some(err) = sig.bounce(cond, text) {
            self.route(err);
        }
    }

    fn route(&mut self, sig: Signal) {
        let to = sig.to();
        match self.domains.lookup(to.domain().as_str()) {
            Domain::Local => {}
            Domain::Service(s) => {
                return match s.signals.try_send(sig) {
                    Ok(()) => {}
                    Err(SendError::Full(sig)) => self.bounce(
                        sig,
                        ErrorCondition::ResourceConstraint,
                        Some("the service is overloaded"),
                    ),
                    Err(SendError::Closed(sig)) => {
                        self.bounce(sig, ErrorCondition::ServiceUnavailable, None)
                    }
                };
            }
            // a configured component that is not connected now
            Domain::Remote if self.domains.is_component(to.domain().as_str()) => {
                return self.bounce(
                    sig,
                    ErrorCondition::ServiceUnavailable,
                    Some("the component is not connected"),
                );
            }
            Domain::Remote => return self.remote(sig),
        }
        let to = sig.to();
        if to.node().is_none() {
            return self.for_server(sig);
        }
        match to.resource() {
            Some(_) => self.for_full(sig),
            None => self.for_bare(sig),
        }
    }

    /// Tell a service the registry detached why; it hands back what still reaches it.
    /// A service that is gone already has nothing to be told.
    fn dismiss(&self, service: Service, why: Dismissal) {
        if let Some(r) = service.dismiss {
            // past the mailbox bound: one control message per service, never lost
            r.do_send(Dismiss(why));
        }
    }

    /// Tell everyone who reads it which components are attached now (disco#items).
    fn publish_components(&self) {
        let Some(ctx) = self.ctx.as_ref() else { return };
        let mut names: Vec<String> = self
            .domains
            .services()
            .filter(|(_, s)| s.kind == ServiceKind::Component)
            .map(|(d, _)| d.to_string())
            .collect();
        names.sort();
        ctx.components.set(names);
    }

    /// The outbound queue of (remote, local), started on a worker arbiter if not running
    /// (within `s2s.max_outbound_queues`).
    fn queue(&mut self, remote: &str, local: &str) -> Result<OutboundRef, NoQueue> {
        let key = (remote.to_ascii_lowercase(), local.to_ascii_lowercase());
        if let Some(q) = self.outbound.get(&key).filter(|q| q.send.connected()) {
            return Ok(q.clone());
        }
        let ctx = self.ctx.clone().ok_or(NoQueue::Disabled)?;
        let settings = ctx.settings.get();
        if !settings.s2s.enabled {
            return Err(NoQueue::Disabled);
        }
        if self.outbound.len() >= settings.s2s.max_outbound_queues {
            // entries of queues that ended do not count
            self.outbound.retain(|_, q| q.send.connected());
            if self.outbound.len() >= settings.s2s.max_outbound_queues {
                return Err(NoQueue::TooMany);
            }
        }
        let start = self.start_outbound.as_ref().ok_or(NoQueue::Disabled)?;
        let worker = self
            .workers
            .get(self.next_worker % self.workers.len().max(1));
        self.next_worker = self.next_worker.wrapping_add(1);
        let q = start(key.0.clone(), key.1.clone(), ctx, worker);
        self.outbound.insert(key, q.clone());
        Ok(q)
    }

    /// For a domain neither hosted nor served here: its outbound queue (federation).
    fn remote(&mut self, sig: Signal) {
        let remote = sig.to().domain().to_string();
        let local = sig.from().domain().to_string();
        if !matches!(
            self.domains.lookup(&local),
            Domain::Local | Domain::Service(_)
        ) {
            // never relay between two remote domains
            return self.bounce(sig, ErrorCondition::NotAllowed, Some("no relaying"));
        }
        let q = match self.queue(&remote, &local) {
            Ok(q) => q,
            Err(NoQueue::Disabled) => {
                return self.bounce(
                    sig,
                    ErrorCondition::RemoteServerNotFound,
                    Some("server-to-server is not enabled"),
                );
            }
            Err(NoQueue::TooMany) => {
                return self.bounce(
                    sig,
                    ErrorCondition::ResourceConstraint,
                    Some("too many remote servers are being reached"),
                );
            }
        };
        match q.send.try_send(ToOutbound::Signal(sig)) {
            Ok(()) => {}
            Err(SendError::Full(ToOutbound::Signal(sig))) => self.bounce(
                sig,
                ErrorCondition::ResourceConstraint,
                Some("the outbound queue is overloaded"),
            ),
            Err(SendError::Closed(ToOutbound::Signal(sig))) => self.bounce(
                sig,
                ErrorCondition::RemoteServerTimeout,
                Some("the outbound queue ended"),
            ),
            Err(_) => {}
        }
    }

    /// Addressed to a hosted domain itself.
    fn for_server(&mut self, sig: Signal) {
        match &sig {
            // an administration command from a user of another hosted domain: the
            // sender's account actor runs it (it holds the sender's command sessions
            // and checks the rights); the answer is routed back from the domain
            Signal::Info(i)
                if features::adhoc::is_command(&i.stanza)
                    && i.from.node().is_some()
                    && matches!(self.domains.lookup(i.from.domain().as_str()), Domain::Local) =>
            {
                self.command_to_senders_account(sig)
            }
            Signal::Info(i) => {
                let Some(ctx) = self.ctx.as_ref() else { return };
                let settings = ctx.settings.get();
                let env =
                    Env::new(&settings, i.to.domain().as_str()).with_components(&ctx.components);
                if let Some(reply) = features::serve(&env, Entity::Server, Who::Anyone, &i.stanza)
                    && let Some(r) = Signal::new(i.to.clone(), i.from.clone(), reply)
                {
                    self.route(r);
                }
            }
            Signal::Message(_) if !sig.is_error() => {
                self.bounce(sig, ErrorCondition::ServiceUnavailable, None);
            }
            // Presence to the server and errors addressed to it end here.
            _ => {}
        }
    }

    fn for_bare(&mut self, sig: Signal) {
        let bare = sig.to().to_bare();
        match &sig {
            Signal::Message(_) => {
                let ty = sig.stanza_type();
                if ty == Some("error") {
                    return;
                }
                if ty == Some("groupchat") {
                    return self.bounce(sig, ErrorCondition::ServiceUnavailable, None);
                }
                if self.waiting.is_waiting(&bare) {
                    // older messages wait for the account: this one goes behind them
                    // (the account delivers it to its sessions or stores it)
                    return self.wait(bare, sig);
                }
                let targets = self.routes.message_targets(&bare, ty);
                match (targets.is_empty(), ty) {
                    // RFC 6121 §8.5.2.1.1: a headline for nobody is dropped
                    (true, Some("headline")) => {}
                    // nobody to take it now: offline storage, or an error
                    (true, _) => self.for_account(sig),
                    (false, _) => self.deliver_all(sig, targets),
                }
            }
            Signal::Notify(_) => {
                let targets = self.routes.available(&bare);
                self.deliver_all(sig, targets);
            }
            // subscriptions, probes and iq for an account are the account's to answer
            Signal::Subscribe(_) | Signal::Info(_) => self.for_account(sig),
        }
    }

    fn for_full(&mut self, sig: Signal) {
        let Ok(full) = sig.to().clone().try_into_full() else {
            return self.for_bare(sig);
        };
        if let Signal::Subscribe(_) = sig {
            // RFC 6121 §3: subscription stanzas are handled for the bare JID
            return self.for_account(sig);
        }
        if let Some(addr) = self.routes.lookup(&full) {
            return self.deliver(sig, addr);
        }
        // RFC 6121 §8.5.3.2: no such resource.
        match &sig {
            Signal::Message(_) => match sig.stanza_type() {
                Some("groupchat") => self.bounce(sig, ErrorCondition::ServiceUnavailable, None),
                Some("headline") | Some("error") => {}
                _ => self.for_bare(sig),
            },
            Signal::Subscribe(_) => self.for_bare(sig),
            Signal::Info(_) => self.bounce(sig, ErrorCondition::ServiceUnavailable, None),
            Signal::Notify(_) => {}
        }
    }

    fn deliver_all(&mut self, sig: Signal, mut targets: Vec<SessionRef>) {
        // presence to an account with no available resource ends here
        let Some(last) = targets.pop() else { return };
        for addr in targets {
            self.deliver(sig.clone(), addr);
        }
        self.deliver(sig, last);
    }

    fn deliver(&mut self, sig: Signal, addr: SessionRef) {
        match addr.try_send(ToSession::Signal(sig)) {
            Ok(()) => {}
            Err(SendError::Full(ToSession::Signal(sig))) => self.bounce(
                sig,
                ErrorCondition::ResourceConstraint,
                Some("recipient is overloaded"),
            ),
            Err(SendError::Full(_)) => {}
            Err(SendError::Closed(m)) => {
                let ToSession::Signal(sig) = m else { return };
                // The session ended between lookup and delivery: as if it were not there.
                self.forget(sig.to().to_bare(), &addr);
                match &sig {
                    Signal::Message(_) => self.for_bare(sig),
                    Signal::Notify(_) => {}
                    _ => self.bounce(sig, ErrorCondition::ServiceUnavailable, None),
                }
            }
        }
    }

    /// Apply a change to the table and send it to every replica.
    fn update(&mut self, u: RouteUpdate) {
        for r in &self.replicas {
            r.do_send(u.clone());
        }
        self.routes.apply(u);
    }

    fn forget(&mut self, bare: BareJid, addr: &SessionRef) {
        self.update(RouteUpdate::Remove(bare, addr.clone()));
    }
}

/// Signals the registry queues from sessions before they have to wait (a bound on its
/// mailbox; internal senders are not held back).
pub const MAILBOX: usize = 64 * 1024;

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.me = Some(ctx.address().downgrade());
        self.expire_waiting(ctx);
    }
}

impl Handler<Signal> for Registry {
    type Result = ();
    fn handle(&mut self, sig: Signal, _: &mut Context<Self>) {
        self.route(sig);
    }
}

impl Handler<FromSession> for Registry {
    type Result = ();
    fn handle(&mut self, m: FromSession, _: &mut Context<Self>) {
        self.sender = Some(m.backlog);
        self.route(m.sig);
        self.sender = None;
        m.pending.fetch_sub(1, Ordering::Release);
    }
}

fn random_resource() -> String {
    format!("xmppd-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

impl Handler<Bind> for Registry {
    type Result = Result<(FullJid, AccountRef), BindError>;
    fn handle(&mut self, b: Bind, _: &mut Context<Self>) -> Self::Result {
        let gone: Vec<SessionRef> = self
            .routes
            .entries(&b.bare)
            .iter()
            .filter(|r| !r.addr.connected())
            .map(|r| r.addr.clone())
            .collect();
        for addr in gone {
            self.forget(b.bare.clone(), &addr);
        }
        let entries = self.routes.entries(&b.bare);
        let max = self
            .ctx
            .as_ref()
            .map_or(64, |c| c.settings.get().limits.max_sessions_per_account);
        if entries.len() >= max {
            return Err(BindError::TooManySessions);
        }
        let taken = |r: &str| entries.iter().any(|e| e.resource == r);
        let resource = match b.resource {
            Some(r) if !taken(&r) => r,
            Some(_) if b.exact => return Err(BindError::Conflict),
            // RFC 6120 §7.7.2.2: on conflict the server may assign another resource.
            Some(r) => format!("{r}.{:08x}", rand::random::<u32>()),
            None => random_resource(),
        };
        let full = b
            .bare
            .with_resource_str(&resource)
            .map_err(|_| BindError::Conflict)?;
        let account = self.account(&b.bare).ok_or(BindError::Unavailable)?;
        let route = Route {
            resource,
            addr: b.session,
            available: false,
            priority: 0,
        };
        self.update(RouteUpdate::Add(b.bare.clone(), route));
        slog::debug!(self.log, "bound"; "jid" => %full, "sessions" => self.routes.len());
        Ok((full, account))
    }
}

impl Handler<Unbind> for Registry {
    type Result = ();
    fn handle(&mut self, u: Unbind, _: &mut Context<Self>) {
        self.forget(u.jid.to_bare(), &u.session);
    }
}

impl Handler<Availability> for Registry {
    type Result = ();
    fn handle(&mut self, a: Availability, _: &mut Context<Self>) {
        self.update(RouteUpdate::Availability(a.jid, a.available, a.priority));
    }
}

impl Handler<SetDomains> for Registry {
    type Result = ();
    fn handle(&mut self, d: SetDomains, _: &mut Context<Self>) {
        let hosted = self
            .domains
            .set_local(d.local)
            .into_iter()
            .map(|(domain, s)| (domain, s, Dismissal::HostGone));
        let dismissed: Vec<_> = hosted
            .chain(self.domains.set_components(d.components))
            .collect();
        for (domain, service, why) in dismissed {
            slog::info!(self.log, "component dismissed by a reload"; "domain" => &domain, "why" => ?why);
            self.dismiss(service, why);
        }
        self.publish_components();
    }
}

impl Handler<AttachComponent> for Registry {
    type Result = Result<(), AttachError>;
    fn handle(&mut self, a: AttachComponent, _: &mut Context<Self>) -> Self::Result {
        // the configuration may have changed while the component was handshaking
        match self.domains.component_secret(&a.domain) {
            None => return Err(AttachError::Unknown),
            Some(s) if s != a.secret => return Err(AttachError::SecretChanged),
            Some(_) => {}
        }
        let service = Service {
            kind: ServiceKind::Component,
            signals: a.signals,
            dismiss: Some(a.dismiss),
        };
        if a.replace {
            if let Some(old) = self.domains.replace(&a.domain, service)? {
                slog::info!(self.log, "component replaced by a new connection"; "domain" => &a.domain);
                self.dismiss(old, Dismissal::Replaced);
            }
        } else {
            self.domains.attach(&a.domain, service)?;
        }
        slog::info!(self.log, "component attached"; "domain" => &a.domain);
        self.publish_components();
        Ok(())
    }
}

impl Handler<DetachService> for Registry {
    type Result = ();
    fn handle(&mut self, d: DetachService, _: &mut Context<Self>) {
        if self.domains.detach(&d.domain, &d.signals) {
            slog::info!(self.log, "component detached"; "domain" => &d.domain);
            self.publish_components();
        }
    }
}

impl Handler<ListSessions> for Registry {
    type Result = MessageResult<ListSessions>;
    fn handle(&mut self, _: ListSessions, _: &mut Context<Self>) -> Self::Result {
        let mut v: Vec<SessionInfo> = self
            .routes
            .iter()
            .flat_map(|(bare, es)| {
                es.iter().map(move |e| SessionInfo {
                    jid: format!("{bare}/{}", e.resource),
                    available: e.available,
                    priority: e.priority,
                })
            })
            .collect();
        v.sort_by(|a, b| a.jid.cmp(&b.jid));
        MessageResult(v)
    }
}

/// Wiring at start: the shared context and the arbiters accounts run on.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Init {
    pub ctx: Ctx,
    /// Route table replicas, one per worker arbiter.
    pub replicas: Vec<Recipient<RouteUpdate>>,
    pub workers: Vec<ArbiterHandle>,
    pub start_account: AccountStarter,
    pub start_outbound: OutboundStarter,
}

impl Handler<Init> for Registry {
    type Result = ();
    fn handle(&mut self, i: Init, _: &mut Context<Self>) {
        let settings = i.ctx.settings.get();
        self.domains.set_components(
            settings
                .components
                .iter()
                .map(|c| (c.name.clone(), c.secret.clone())),
        );
        self.ctx = Some(i.ctx);
        self.replicas = i.replicas;
        self.workers = i.workers;
        self.start_account = Some(i.start_account);
        self.start_outbound = Some(i.start_outbound);
    }
}

impl Handler<AccountIdle> for Registry {
    type Result = bool;
    fn handle(&mut self, a: AccountIdle, _: &mut Context<Self>) -> bool {
        let current = self.accounts.get(&a.bare) == Some(&a.addr);
        if !current {
            // already replaced: the old one may stop
            return true;
        }
        let bound = self
            .routes
            .entries(&a.bare)
            .iter()
            .any(|r| r.addr.connected());
        if bound {
            return false;
        }
        self.accounts.remove(&a.bare);
        true
    }
}

/// Attach an actor that serves every JID of a domain (a room service, a component).
#[derive(actix::Message)]
#[rtype(result = "Result<(), domains::AttachError>")]
pub struct Attach {
    pub domain: String,
    pub service: domains::Service,
}

impl Handler<Attach> for Registry {
    type Result = Result<(), domains::AttachError>;
    fn handle(&mut self, a: Attach, _: &mut Context<Self>) -> Self::Result {
        self.domains.attach(&a.domain, a.service)
    }
}

/// The handle every other actor reaches the registry by.
pub fn reference(addr: &Addr<Registry>) -> crate::signals::RegistryRef {
    crate::signals::RegistryRef {
        signal: addr.clone().recipient(),
        from_session: addr.clone().recipient(),
        bind: addr.clone().recipient(),
        unbind: addr.clone().recipient(),
        availability: addr.clone().recipient(),
        set_domains: addr.clone().recipient(),
        list_sessions: addr.clone().recipient(),
        account_idle: addr.clone().recipient(),
        for_account: addr.clone().recipient(),
        attach_component: addr.clone().recipient(),
        detach_service: addr.clone().recipient(),
        dialback_verify: addr.clone().recipient(),
        list_queues: addr.clone().recipient(),
        outbound_idle: addr.clone().recipient(),
        remove_account: addr.clone().recipient(),
    }
}

//! The registry (the "real-time component"): the routing table of the server.
//!
//! It knows the hosted domains and every bound session, resolves the `to` of each
//! signal and hands it to the session that takes it, answers what is addressed to the
//! server, and returns what cannot be delivered to its sender as an error.

use crate::account::Account;
use crate::context::Ctx;
use crate::routes::{Replica, Route, RouteTable, RouteUpdate};
use crate::server_iq::{self, Addressee};
use crate::session::Session;
use crate::signals::Signal;
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use xmpp_parsers::jid::{BareJid, FullJid};
use xmppd_proto::stanza::ErrorCondition;

pub struct Registry {
    domains: HashSet<String>,
    /// The authoritative table; every change is also sent to the replicas.
    routes: RouteTable,
    replicas: Vec<Addr<Replica>>,
    /// Account actors, started on first need (a session binds, or a signal arrives).
    accounts: HashMap<BareJid, Addr<Account>>,
    log: slog::Logger,
    /// Set once at start ([`Init`]); accounts need it.
    ctx: Option<Ctx>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
}

impl Registry {
    pub fn new(domains: impl IntoIterator<Item = String>, log: slog::Logger) -> Self {
        Registry {
            domains: domains.into_iter().collect(),
            routes: RouteTable::default(),
            replicas: Vec::new(),
            accounts: HashMap::new(),
            log,
            ctx: None,
            workers: Vec::new(),
            next_worker: 0,
        }
    }

    /// The account actor for `bare`, started on a worker arbiter if not running.
    fn account(&mut self, bare: &BareJid) -> Option<Addr<Account>> {
        if let Some(a) = self.accounts.get(bare).filter(|a| a.connected()) {
            return Some(a.clone());
        }
        let ctx = self.ctx.clone()?;
        let b = bare.clone();
        let addr = match self
            .workers
            .get(self.next_worker % self.workers.len().max(1))
        {
            Some(w) => Account::start_in_arbiter(w, move |_| Account::new(b, ctx)),
            None => Account::new(b, ctx).start(),
        };
        self.next_worker = self.next_worker.wrapping_add(1);
        self.accounts.insert(bare.clone(), addr.clone());
        Some(addr)
    }

    /// Hand a signal to the account actor of its recipient.
    fn for_account(&mut self, sig: Signal) {
        let bare = sig.to().to_bare();
        match self.account(&bare) {
            Some(a) => match a.try_send(sig) {
                Ok(()) => {}
                Err(SendError::Full(sig)) | Err(SendError::Closed(sig)) => self.bounce(
                    sig,
                    ErrorCondition::ResourceConstraint,
                    Some("recipient is overloaded"),
                ),
            },
            None => self.bounce(sig, ErrorCondition::InternalServerError, None),
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
        if !self.domains.contains(to.domain().as_str()) {
            // Federation is not built yet: every other domain is unreachable.
            return self.bounce(
                sig,
                ErrorCondition::RemoteServerNotFound,
                Some("server-to-server is not enabled"),
            );
        }
        if to.node().is_none() {
            return self.for_server(sig);
        }
        match to.resource() {
            Some(_) => self.for_full(sig),
            None => self.for_bare(sig),
        }
    }

    /// Addressed to a hosted domain itself.
    fn for_server(&mut self, sig: Signal) {
        match &sig {
            Signal::Info(i) => {
                if let Some(reply) = server_iq::handle(&i.stanza, Addressee::Server)
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

    fn deliver_all(&mut self, sig: Signal, mut targets: Vec<Addr<Session>>) {
        // presence to an account with no available resource ends here
        let Some(last) = targets.pop() else { return };
        for addr in targets {
            self.deliver(sig.clone(), addr);
        }
        self.deliver(sig, last);
    }

    fn deliver(&mut self, sig: Signal, addr: Addr<Session>) {
        match addr.try_send(sig) {
            Ok(()) => {}
            Err(SendError::Full(sig)) => self.bounce(
                sig,
                ErrorCondition::ResourceConstraint,
                Some("recipient is overloaded"),
            ),
            Err(SendError::Closed(sig)) => {
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

    fn forget(&mut self, bare: BareJid, addr: &Addr<Session>) {
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
    }
}

impl Handler<Signal> for Registry {
    type Result = ();
    fn handle(&mut self, sig: Signal, _: &mut Context<Self>) {
        self.route(sig);
    }
}

/// A signal a client's session could not deliver on its direct path, with the
/// session's count of such signals not yet routed. The registry lowers the count once
/// the signal is in its recipient's mailbox (or answered): until then the session
/// sends everything through here too, so a later signal on the direct path cannot
/// overtake an earlier one (RFC 6120 §10.1: in order between two entities).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct FromSession {
    pub sig: Signal,
    pub pending: Arc<AtomicUsize>,
}

impl Handler<FromSession> for Registry {
    type Result = ();
    fn handle(&mut self, m: FromSession, _: &mut Context<Self>) {
        self.route(m.sig);
        m.pending.fetch_sub(1, Ordering::Release);
    }
}

/// Resource binding (RFC 6120 §7).
#[derive(actix::Message)]
#[rtype(result = "Result<(FullJid, Addr<Account>), BindError>")]
pub struct Bind {
    pub bare: BareJid,
    /// The resource the client asked for (already resourceprep'd), if any.
    pub resource: Option<String>,
    /// Refuse instead of generating a new resource on conflict (legacy auth).
    pub exact: bool,
    pub session: Addr<Session>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("the resource is in use")]
    Conflict,
    #[error("too many sessions for this account")]
    TooManySessions,
    #[error("the server is not ready")]
    Unavailable,
}

fn random_resource() -> String {
    format!("xmppd-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

impl Handler<Bind> for Registry {
    type Result = Result<(FullJid, Addr<Account>), BindError>;
    fn handle(&mut self, b: Bind, _: &mut Context<Self>) -> Self::Result {
        let gone: Vec<Addr<Session>> = self
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

#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Unbind {
    pub jid: FullJid,
    pub session: Addr<Session>,
}

impl Handler<Unbind> for Registry {
    type Result = ();
    fn handle(&mut self, u: Unbind, _: &mut Context<Self>) {
        self.forget(u.jid.to_bare(), &u.session);
    }
}

/// A session's presence changed (initial presence, priority, unavailable).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Availability {
    pub jid: FullJid,
    pub available: bool,
    pub priority: i8,
}

impl Handler<Availability> for Registry {
    type Result = ();
    fn handle(&mut self, a: Availability, _: &mut Context<Self>) {
        self.update(RouteUpdate::Availability(a.jid, a.available, a.priority));
    }
}

/// The hosted domains changed (configuration reload).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct SetDomains(pub Vec<String>);

impl Handler<SetDomains> for Registry {
    type Result = ();
    fn handle(&mut self, d: SetDomains, _: &mut Context<Self>) {
        self.domains = d.0.into_iter().collect();
    }
}

/// One row of the session list (monitoring, tests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub jid: String,
    pub available: bool,
    pub priority: i8,
}

#[derive(actix::Message)]
#[rtype(result = "Vec<SessionInfo>")]
pub struct ListSessions;

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
    pub replicas: Vec<Addr<Replica>>,
    pub workers: Vec<ArbiterHandle>,
}

impl Handler<Init> for Registry {
    type Result = ();
    fn handle(&mut self, i: Init, _: &mut Context<Self>) {
        self.ctx = Some(i.ctx);
        self.replicas = i.replicas;
        self.workers = i.workers;
    }
}

/// An account actor with nothing to do asks to be forgotten; the answer says whether
/// it may stop (no session bound meanwhile, and it is still the registered one).
#[derive(actix::Message)]
#[rtype(result = "bool")]
pub struct AccountIdle {
    pub bare: BareJid,
    pub addr: Addr<Account>,
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

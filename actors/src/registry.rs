//! The registry (the "real-time component"): the routing table of the server.
//!
//! It knows the hosted domains and every bound session, resolves the `to` of each
//! signal and hands it to the session that takes it, answers what is addressed to the
//! server, and returns what cannot be delivered to its sender as an error.

use crate::server_iq::{self, Addressee};
use crate::session::Session;
use crate::signals::Signal;
use crate::stanza::ErrorCondition;
use actix::prelude::*;
use std::collections::{HashMap, HashSet};
use xmpp_parsers::jid::{BareJid, FullJid};

/// One bound resource.
struct Entry {
    resource: String,
    addr: Addr<Session>,
    available: bool,
    priority: i8,
}

pub struct Registry {
    domains: HashSet<String>,
    sessions: HashMap<BareJid, Vec<Entry>>,
    max_sessions_per_account: usize,
    log: slog::Logger,
}

impl Registry {
    pub fn new(domains: impl IntoIterator<Item = String>, log: slog::Logger) -> Self {
        Registry {
            domains: domains.into_iter().collect(),
            sessions: HashMap::new(),
            max_sessions_per_account: 64,
            log,
        }
    }

    fn bounce(&mut self, sig: Signal, cond: ErrorCondition, text: Option<&str>) {
        slog::info!(self.log, "signal not delivered"; "from" => %sig.from(), "to" => %sig.to(), "error" => cond.as_str());
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
        let entries = self.sessions.get(&bare).map(Vec::as_slice).unwrap_or(&[]);
        match &sig {
            Signal::Message(_) => {
                let ty = sig.stanza_type();
                if ty == Some("error") {
                    return;
                }
                if ty == Some("groupchat") {
                    return self.bounce(sig, ErrorCondition::ServiceUnavailable, None);
                }
                let targets: Vec<Addr<Session>> = if ty == Some("headline") {
                    entries
                        .iter()
                        .filter(|e| e.available && e.priority >= 0)
                        .map(|e| e.addr.clone())
                        .collect()
                } else {
                    let best = entries
                        .iter()
                        .filter(|e| e.available && e.priority >= 0)
                        .map(|e| e.priority)
                        .max();
                    entries
                        .iter()
                        .filter(|e| e.available && Some(e.priority) == best)
                        .map(|e| e.addr.clone())
                        .collect()
                };
                self.deliver_all(sig, targets);
            }
            Signal::Notify(_) | Signal::Subscribe(_) => {
                let targets = entries
                    .iter()
                    .filter(|e| e.available)
                    .map(|e| e.addr.clone())
                    .collect();
                self.deliver_all(sig, targets);
            }
            Signal::Info(i) => {
                if entries.is_empty() {
                    return self.bounce(sig, ErrorCondition::ServiceUnavailable, None);
                }
                if let Some(reply) = server_iq::handle(&i.stanza, Addressee::Account)
                    && let Some(r) = Signal::new(i.to.clone(), i.from.clone(), reply)
                {
                    self.route(r);
                }
            }
        }
    }

    fn for_full(&mut self, sig: Signal) {
        let Ok(full) = sig.to().clone().try_into_full() else {
            return self.for_bare(sig);
        };
        if let Some(addr) = self.lookup(&full) {
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

    fn lookup(&self, full: &FullJid) -> Option<Addr<Session>> {
        let entries = self.sessions.get(&full.to_bare())?;
        entries
            .iter()
            .find(|e| e.resource == full.resource().as_str())
            .map(|e| e.addr.clone())
    }

    fn deliver_all(&mut self, sig: Signal, mut targets: Vec<Addr<Session>>) {
        let Some(last) = targets.pop() else {
            if let Signal::Message(_) = sig {
                self.bounce(sig, ErrorCondition::ServiceUnavailable, None);
            }
            // presence to an account with no available resource ends here (for now)
            return;
        };
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
                self.forget(&addr);
                match sig.to().clone().try_into_full() {
                    Ok(_) if matches!(sig, Signal::Message(_)) => self.for_bare(sig),
                    _ => self.bounce(sig, ErrorCondition::ServiceUnavailable, None),
                }
            }
        }
    }

    fn forget(&mut self, addr: &Addr<Session>) {
        for v in self.sessions.values_mut() {
            v.retain(|e| &e.addr != addr);
        }
        self.sessions.retain(|_, v| !v.is_empty());
    }

    fn session_count(&self) -> usize {
        self.sessions.values().map(Vec::len).sum()
    }
}

impl Actor for Registry {
    type Context = Context<Self>;
}

impl Handler<Signal> for Registry {
    type Result = ();
    fn handle(&mut self, sig: Signal, _: &mut Context<Self>) {
        self.route(sig);
    }
}

/// Resource binding (RFC 6120 §7).
#[derive(actix::Message)]
#[rtype(result = "Result<FullJid, BindError>")]
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
}

fn random_resource() -> String {
    format!("xmppd-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

impl Handler<Bind> for Registry {
    type Result = Result<FullJid, BindError>;
    fn handle(&mut self, b: Bind, _: &mut Context<Self>) -> Self::Result {
        let entries = self.sessions.entry(b.bare.clone()).or_default();
        entries.retain(|e| e.addr.connected());
        if entries.len() >= self.max_sessions_per_account {
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
        entries.push(Entry {
            resource,
            addr: b.session,
            available: false,
            priority: 0,
        });
        slog::debug!(self.log, "bound"; "jid" => %full, "sessions" => self.session_count());
        Ok(full)
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
        let bare = u.jid.to_bare();
        if let Some(v) = self.sessions.get_mut(&bare) {
            v.retain(|e| e.addr != u.session);
            if v.is_empty() {
                self.sessions.remove(&bare);
            }
        }
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
        if let Some(v) = self.sessions.get_mut(&a.jid.to_bare())
            && let Some(e) = v
                .iter_mut()
                .find(|e| e.resource == a.jid.resource().as_str())
        {
            e.available = a.available;
            e.priority = a.priority;
        }
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
            .sessions
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

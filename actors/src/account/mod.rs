//! The account actor: one per account with activity (bound sessions, or signals to
//! process while it is offline). It is the single writer of the account's durable
//! state — roster, subscription requests, offline messages, vCard, private XML,
//! blocklist — and runs presence (RFC 6121 §4) and subscriptions (§3) for it.

mod blocklist;
mod contacts;
mod documents;
mod offline_messages;
mod presence;

mod subscriptions;

use crate::context::Ctx;
use crate::features::{self, Caller, Entity, Env, IqHandler, Who};
use crate::signals::to_registry::AccountIdle;
use crate::signals::{AccountRef, SessionRef, Signal, SubscribeKind, ToAccount, ToSession};
use crate::storage::{RosterData, StorageError};
use actix::prelude::*;
use minidom::Element;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use xmpp_parsers::jid::{BareJid, Jid};
use xmppd_proto::im::blocking::{self, Request as BlockRequest};
use xmppd_proto::im::offline;
use xmppd_proto::im::roster::{self, Change, Item, State};
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition, set_attr};

/// Signals waiting for one account actor before the registry refuses more (the same
/// bound as a session's).
pub const MAILBOX: usize = 1024;

/// How long an account actor with no sessions stays around.
const LINGER: Duration = Duration::from_secs(30);

/// One bound resource of the account.
struct Resource {
    addr: SessionRef,
    /// The last available presence broadcast (no `to`), serialised (an element
    /// costs ten times the bytes), when available.
    presence: Option<Box<str>>,
    priority: i8,
    /// Requested the roster (gets pushes) / the blocklist (gets blocklist pushes).
    roster_interest: bool,
    block_interest: bool,
    /// Directed presence sent to entities not subscribed to the user's presence.
    directed: BTreeSet<String>,
    /// Offline messages were handed over (at the first non-negative presence).
    offline_done: bool,
}

pub struct Account {
    bare: BareJid,
    user: String,
    domain: String,
    ctx: Ctx,
    log: slog::Logger,
    /// `None` until loaded; `Some(false)` for an address with no account behind it.
    exists: Option<bool>,
    roster: BTreeMap<String, Item>,
    ver: u64,
    /// Contact → the subscription request stanza waiting for an answer.
    pending: BTreeMap<String, String>,
    blocklist: Vec<String>,
    /// Messages may be stored for the account: read at load, set when one is stored,
    /// cleared when they are taken for delivery. Spares a login the storage round trip
    /// when there are none.
    offline_waiting: bool,
    resources: Resources,
    linger: Option<SpawnHandle>,
}

impl Account {
    pub fn new(bare: BareJid, ctx: Ctx) -> Self {
        let user = bare.node().map(|n| n.to_string()).unwrap_or_default();
        let domain = bare.domain().to_string();
        let log = ctx.log.new(slog::o!("account" => bare.to_string()));
        Account {
            bare,
            user,
            domain,
            ctx,
            log,
            exists: None,
            roster: BTreeMap::new(),
            ver: 0,
            pending: BTreeMap::new(),
            blocklist: Vec::new(),
            offline_waiting: true,
            resources: Resources::default(),
            linger: None,
        }
    }

    fn bare_jid(&self) -> Jid {
        Jid::from(self.bare.clone())
    }

    fn full(&self, resource: &str) -> Jid {
        self.bare
            .with_resource_str(resource)
            .map(Jid::from)
            .unwrap_or_else(|_| self.bare_jid())
    }

    fn route(&self, el: Element) {
        if let Some(sig) = Signal::from_stanza(el) {
            self.ctx.registry.route(sig);
        }
    }

    fn bounce(&self, sig: &Signal, cond: ErrorCondition, text: Option<&str>) {
        if let Some(b) = sig.bounce(cond, text) {
            self.ctx.registry.route(b);
        }
    }

    fn write(&self, resource: &str, el: Element) {
        if let Some(r) = self.resources.get(resource) {
            r.addr.do_send(ToSession::Write(el));
        }
    }

    /// Run a storage call in order with everything else the account does.
    /// `f` gets the backend, the domain and the user name.
    fn store<R, F>(
        &mut self,
        ctx: &mut Context<Self>,
        f: F,
        then: impl FnOnce(&mut Self, Result<R, StorageError>, &mut Context<Self>) + 'static,
    ) where
        R: Send + 'static,
        F: FnOnce(&dyn crate::storage::Backend, &str, &str) -> Result<R, StorageError>
            + Send
            + 'static,
    {
        let storage = self.ctx.storage.clone();
        let (domain, user) = (self.domain.clone(), self.user.clone());
        async move { storage.run(move |b| f(b, &domain, &user)).await }
            .into_actor(self)
            .map(move |r, act, ctx| then(act, r, ctx))
            .wait(ctx);
    }

    fn log_storage_error(&self, what: &str, r: Result<(), StorageError>) {
        if let Err(e) = r {
            slog::error!(self.log, "storage failed"; "what" => what, "error" => %e);
        }
    }

    // --------------------------------------------------------- inbound signals --

    fn inbound(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        match &sig {
            Signal::Subscribe(s) => {
                let kind = s.kind;
                self.inbound_subscription(sig, kind, ctx)
            }
            Signal::Message(_) => self.inbound_message(sig, ctx),
            Signal::Info(_) => self.inbound_iq(sig, ctx),
            Signal::Notify(_) => {}
        }
    }

    /// An iq to the account's bare JID from another entity.
    fn inbound_iq(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        if self.exists != Some(true) || self.is_blocked(sig.from()) {
            return self.bounce(&sig, ErrorCondition::ServiceUnavailable, None);
        }
        let iq = sig.stanza().clone();
        self.run_iq(Caller::Other(sig), iq, Who::Anyone, ctx);
    }

    /// An iq from one of the account's resources, for the account itself.
    fn own_iq(&mut self, resource: String, iq: Element, ctx: &mut Context<Self>) {
        self.run_iq(Caller::Own(resource), iq, Who::Owner, ctx);
    }

    /// Run an iq through the feature table: a handler that needs the account's state
    /// runs here, a pure one answers at once, anything else is `service-unavailable`.
    fn run_iq(&mut self, caller: Caller, iq: Element, who: Who, ctx: &mut Context<Self>) {
        let settings = self.ctx.settings.get();
        let env = Env::new(&settings, &self.domain);
        let reply = match features::lookup(&env, Entity::Account, who, &iq).map(|r| r.handler) {
            Some(IqHandler::Account(f)) => return f(self, caller, iq, ctx),
            Some(IqHandler::Pure(_)) => features::answer(&env, Entity::Account, who, &iq),
            _ => stanza::error_reply(&iq, ErrorCondition::ServiceUnavailable, None),
        };
        if let Some(r) = reply {
            self.reply_to(&caller, r);
        }
    }

    /// Send an iq reply to whoever asked.
    fn reply_to(&self, caller: &Caller, reply: Element) {
        match caller {
            Caller::Own(resource) => self.write(resource, reply),
            Caller::Other(_) => self.route(reply),
        }
    }

    fn schedule_linger(&mut self, ctx: &mut Context<Self>) {
        if !self.resources.is_empty() {
            if let Some(h) = self.linger.take() {
                ctx.cancel_future(h);
            }
            return;
        }
        if self.linger.is_some() {
            return;
        }
        let wait = if self.exists == Some(true) {
            LINGER
        } else {
            Duration::from_millis(100)
        };
        self.linger = Some(ctx.run_later(wait, |act, ctx| {
            act.linger = None;
            if !act.resources.is_empty() {
                return;
            }
            act.ctx
                .registry
                .account_idle
                .send(AccountIdle {
                    bare: act.bare.clone(),
                    addr: AccountRef::new(ctx.address().recipient()),
                })
                .into_actor(act)
                .map(|r, act, ctx| match r {
                    Ok(true) => ctx.address().do_send(StopAccount),
                    _ => act.schedule_linger(ctx),
                })
                .wait(ctx);
        }));
    }
}

fn unavailable(from: &str, to: &str) -> Element {
    let mut p = Element::bare("presence", ns::CLIENT);
    set_attr(&mut p, "from", from);
    if !to.is_empty() {
        set_attr(&mut p, "to", to);
    }
    set_attr(&mut p, "type", "unavailable");
    p
}

impl Actor for Account {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        // Everything that arrives waits until the account is loaded.
        self.store(
            ctx,
            move |b, d, u| {
                if !b.account_exists(d, u)? {
                    return Ok(None);
                }
                Ok(Some((
                    b.roster_load(d, u)?,
                    b.blocklist_get(d, u)?,
                    b.offline_waiting(d, u)?,
                )))
            },
            |act, r: Result<Option<(RosterData, Vec<String>, bool)>, StorageError>, ctx| {
                match r {
                    Ok(Some((data, blocklist, offline_waiting))) => {
                        act.offline_waiting = offline_waiting;
                        act.exists = Some(true);
                        act.ver = data.ver;
                        act.roster = data.items.into_iter().map(|i| (i.jid.clone(), i)).collect();
                        act.pending = data.pending_in.into_iter().collect();
                        act.blocklist = blocklist;
                    }
                    Ok(None) => act.exists = Some(false),
                    Err(e) => {
                        slog::error!(act.log, "account not loaded"; "error" => %e);
                        act.exists = Some(false);
                    }
                }
                act.schedule_linger(ctx);
            },
        );
    }
}

impl Handler<ToAccount> for Account {
    type Result = ();
    fn handle(&mut self, m: ToAccount, ctx: &mut Context<Self>) {
        match m {
            ToAccount::Signal(sig) => self.inbound(sig, ctx),
            ToAccount::Attach { resource, session } => self.attach(resource, session),
            ToAccount::Detach { resource } => self.broadcast_unavailable_and_remove(&resource),
            ToAccount::FromClient { resource, stanza } => match stanza.name() {
                "presence" => self.client_presence(&resource, stanza, ctx),
                "iq" => self.own_iq(resource, stanza, ctx),
                _ => {}
            },
        }
        self.schedule_linger(ctx);
    }
}

impl Account {
    /// Start the account actor of `bare` (on `worker`, or the current arbiter).
    pub fn start(bare: BareJid, ctx: Ctx, worker: Option<&ArbiterHandle>) -> AccountRef {
        let addr = match worker {
            Some(w) => Account::start_in_arbiter(w, move |_| Account::new(bare, ctx)),
            None => Account::new(bare, ctx).start(),
        };
        AccountRef::new(addr.recipient())
    }

    fn attach(&mut self, resource: String, session: SessionRef) {
        if !self.blocklist.is_empty() {
            session.do_send(ToSession::Blocklist(std::sync::Arc::new(
                self.blocklist.clone(),
            )));
        }
        self.resources.insert(
            resource,
            Resource {
                addr: session,
                presence: None,
                priority: 0,
                roster_interest: false,
                block_interest: false,
                directed: BTreeSet::new(),
                offline_done: false,
            },
        );
    }

    fn broadcast_unavailable_and_remove(&mut self, resource: &str) {
        self.broadcast_unavailable(resource, None);
        self.resources.remove(resource);
    }
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopAccount;

impl Handler<StopAccount> for Account {
    type Result = ();
    fn handle(&mut self, _: StopAccount, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// Mark a resource's offline messages as handed over; returns whether they already were.
fn r_offline_done(resources: &mut Resources, resource: &str) -> bool {
    match resources.get_mut(resource) {
        Some(r) => std::mem::replace(&mut r.offline_done, true),
        None => true,
    }
}

impl Resource {
    fn presence_element(&self) -> Option<Element> {
        self.presence.as_deref().and_then(|p| p.parse().ok())
    }
}

/// The account's bound resources: a handful at most, so a vector.
#[derive(Default)]
struct Resources(Vec<(String, Resource)>);

impl Resources {
    fn get(&self, name: &str) -> Option<&Resource> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Resource> {
        self.0.iter_mut().find(|(n, _)| n == name).map(|(_, r)| r)
    }

    fn insert(&mut self, name: String, r: Resource) {
        self.remove(&name);
        self.0.push((name, r));
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &Resource)> {
        self.0.iter().map(|(n, r)| (n, r))
    }
}

/// Feature-table entry points: the iq handlers that need the account's state.
pub mod iq {
    use super::*;

    /// The roster (RFC 6121 §2), for the account's own resources.
    pub fn roster(acc: &mut Account, caller: Caller, iq: Element, ctx: &mut Context<Account>) {
        if let Caller::Own(resource) = caller {
            acc.roster_iq(&resource, iq, ctx);
        }
    }

    /// The blocklist (XEP-0191), for the account's own resources.
    pub fn blocking(acc: &mut Account, caller: Caller, iq: Element, ctx: &mut Context<Account>) {
        if let Caller::Own(resource) = caller {
            acc.blocking_iq(&resource, iq, ctx);
        }
    }

    /// vCard (XEP-0054) and private XML (XEP-0049).
    pub fn document(acc: &mut Account, caller: Caller, iq: Element, ctx: &mut Context<Account>) {
        match caller {
            Caller::Own(resource) => acc.document_iq(Some(&resource), iq, None, ctx),
            Caller::Other(sig) => acc.document_iq(None, iq, Some(sig), ctx),
        }
    }
}

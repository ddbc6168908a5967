//! The account actor: one per account with activity (bound sessions, or signals to
//! process while it is offline). It is the single writer of the account's durable
//! state — roster, subscription requests, offline messages, vCard, private XML,
//! blocklist. Presence (RFC 6121 §4), subscriptions (§3), blocking and offline storage
//! are decided by [`xmppd_proto::im::account`] over the [`State`] it holds; this actor
//! carries out the effects (`effects.rs`) and the storage continuations.

mod blocklist;
mod contacts;
mod documents;
mod effects;
mod pipeline;
mod register;

use crate::context::Ctx;
use crate::features::{self, Caller, Entity, Env, IqHandler, Who};
use crate::signals::to_registry::AccountIdle;
use crate::signals::{AccountRef, SessionRef, Signal, ToAccount, ToSession};
use crate::storage::{RosterData, StorageError};
use actix::prelude::*;
use minidom::Element;
use std::time::Duration;
use xmpp_parsers::jid::BareJid;
use xmppd_proto::im::account::State;
use xmppd_proto::im::blocking::{self, Request as BlockRequest};
use xmppd_proto::im::roster::{self, Change, Item};
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition};
use xmppd_proto::stream::error::{Condition, StreamError};

/// Signals waiting for one account actor before the registry refuses more (the same
/// bound as a session's).
pub const MAILBOX: usize = 1024;

/// How long an account actor with no sessions stays around.
const LINGER: Duration = Duration::from_secs(30);

pub struct Account {
    /// What the decisions need: roster, pending requests, blocklist, resources.
    state: State,
    user: String,
    domain: String,
    ctx: Ctx,
    log: slog::Logger,
    /// The session of each bound resource (the same names as `state.resources`).
    sessions: Sessions,
    linger: Option<SpawnHandle>,
    /// An in-band removal running or done: the sessions' writes are refused, and a
    /// session that binds after a new registration of the name loads the state again.
    removal: register::Removal,
    /// The administrator's open ad-hoc command sessions (XEP-0050; bounded, expiring).
    commands: xmppd_proto::xep::adhoc::Sessions,
    /// Offline messages queued with the storage writer, not yet answered.
    pipeline: pipeline::Pipeline,
    _counted: crate::metrics::ActorGuard,
}

impl Account {
    pub fn new(bare: BareJid, ctx: Ctx) -> Self {
        let user = bare.node().map(|n| n.to_string()).unwrap_or_default();
        let domain = bare.domain().to_string();
        let log = ctx.log.new(slog::o!("account" => bare.to_string()));
        Account {
            state: State::new(bare),
            user,
            domain,
            ctx,
            log,
            sessions: Sessions::default(),
            linger: None,
            removal: register::Removal::None,
            commands: Default::default(),
            pipeline: pipeline::Pipeline::default(),
            _counted: crate::metrics::ActorGuard::new(crate::metrics::ActorKind::Account),
        }
    }

    /// What the server shares (for the feature handlers).
    pub(crate) fn server(&self) -> &Ctx {
        &self.ctx
    }

    /// The account's user name and domain.
    pub(crate) fn user_and_domain(&self) -> (String, String) {
        (self.user.clone(), self.domain.clone())
    }

    /// Send a feature handler's answer to whoever asked.
    pub(crate) fn reply_to_caller(&self, caller: &Caller, el: Element) {
        self.reply_to(caller, el)
    }

    /// The ad-hoc command sessions of this (administrator's) account.
    pub(crate) fn commands(&mut self) -> &mut xmppd_proto::xep::adhoc::Sessions {
        &mut self.commands
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
        if let Some(addr) = self.sessions.get(resource) {
            addr.do_send(ToSession::Write(el));
        }
    }

    /// Run a storage call in order with everything else the account does (after the
    /// offline messages queued before it are answered). `f` gets the backend, the
    /// domain and the user name.
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
        let call = async move { storage.run(move |b| f(b, &domain, &user)).await };
        // one waited future: actix runs the latest `wait` first, so a separate wait for
        // the queued stores would come after this call
        pipeline::Acks { spawned: false }
            .then(move |(), act: &mut Self, _| call.into_actor(act))
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
                let (from, kind) = (s.from.clone(), s.kind);
                let fx = self
                    .state
                    .inbound_subscription(&from, kind, sig.into_stanza());
                self.carry_out(fx, None, ctx)
            }
            Signal::Message(m) => {
                let fx =
                    self.state
                        .inbound_message(&m.from, &m.stanza, std::time::SystemTime::now());
                self.carry_out(fx, Some(&sig), ctx)
            }
            Signal::Info(_) => self.inbound_iq(sig, ctx),
            Signal::Notify(_) => {}
        }
    }

    /// An iq to the account's bare JID from another entity; or one of the account's
    /// own resources' requests to another hosted domain that the registry hands here
    /// (administration commands, `features::adhoc`), run as the user's own.
    fn inbound_iq(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        if sig.to().node().is_none() {
            // the account's own request: also an anonymous one's (not stored, but with
            // its sessions here), which the feature then refuses as it would anyone's
            let live = self.state.exists == Some(true) || !self.sessions.is_empty();
            if sig.from().to_bare() != self.state.bare
                || !live
                || self.removal != register::Removal::None
            {
                return self.bounce(&sig, ErrorCondition::ServiceUnavailable, None);
            }
            let iq = sig.stanza().clone();
            return self.run_iq(Caller::Other(sig), iq, Who::Owner, Entity::Server, ctx);
        }
        if self.state.exists != Some(true) || self.state.is_blocked(sig.from()) {
            return self.bounce(&sig, ErrorCondition::ServiceUnavailable, None);
        }
        let iq = sig.stanza().clone();
        self.run_iq(Caller::Other(sig), iq, Who::Anyone, Entity::Account, ctx);
    }

    /// An iq from one of the account's resources, for the account itself, or for its
    /// domain on the account's behalf (the session keeps `to` only on those).
    fn own_iq(&mut self, resource: String, iq: Element, ctx: &mut Context<Self>) {
        let to = if iq.attr("to").is_some() {
            Entity::Server
        } else {
            Entity::Account
        };
        self.run_iq(Caller::Own(resource), iq, Who::Owner, to, ctx);
    }

    /// Run an iq through the feature table: a handler that needs the account's state
    /// runs here, a pure one answers at once, anything else is `service-unavailable`.
    fn run_iq(
        &mut self,
        caller: Caller,
        iq: Element,
        who: Who,
        to: Entity,
        ctx: &mut Context<Self>,
    ) {
        let settings = self.ctx.settings.get();
        let env = Env::new(&settings, &self.domain);
        let route = features::lookup(&env, to, who, &iq);
        let reply = match route.map(|r| (r, r.handler)) {
            Some((_, IqHandler::Account(f))) => return f(self, caller, iq, ctx),
            Some((r, IqHandler::Pure(_))) => features::run_pure(r, &env, &iq),
            // malformed: bad-request; nobody takes it: service-unavailable
            _ => features::serve(&env, to, who, &iq),
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
        if !self.sessions.is_empty() {
            if let Some(h) = self.linger.take() {
                ctx.cancel_future(h);
            }
            return;
        }
        if self.linger.is_some() {
            return;
        }
        let wait = if self.state.exists == Some(true) {
            LINGER
        } else {
            Duration::from_millis(100)
        };
        self.linger = Some(ctx.run_later(wait, |act, ctx| {
            act.linger = None;
            if !act.sessions.is_empty() {
                return;
            }
            if !act.pipeline.is_empty() {
                // stores still waiting for their answer: not idle yet
                return act.schedule_linger(ctx);
            }
            act.ctx
                .registry
                .account_idle
                .send(AccountIdle {
                    bare: act.state.bare.clone(),
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

impl Actor for Account {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        self.load(ctx);
    }
}

impl Account {
    /// Load the account's state; everything that arrives meanwhile waits.
    fn load(&mut self, ctx: &mut Context<Self>) {
        self.load_then(ctx, |_, _| {});
    }

    /// Load the account's state, then run `then`.
    fn load_then(
        &mut self,
        ctx: &mut Context<Self>,
        then: impl FnOnce(&mut Self, &mut Context<Self>) + 'static,
    ) {
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
            move |act, r: Result<Option<(RosterData, Vec<String>, bool)>, StorageError>, ctx| {
                match r {
                    Ok(Some((data, blocklist, offline_waiting))) => {
                        // registered (again): whatever a removal left is over
                        act.removal = register::Removal::None;
                        let s = &mut act.state;
                        s.offline_waiting = offline_waiting;
                        s.exists = Some(true);
                        s.ver = data.ver;
                        s.roster = data.items.into_iter().map(|i| (i.jid.clone(), i)).collect();
                        s.pending = data.pending_in.into_iter().collect();
                        s.blocklist = blocklist;
                    }
                    Ok(None) => act.state.exists = Some(false),
                    Err(e) => {
                        slog::error!(act.log, "account not loaded"; "error" => %e);
                        act.state.exists = Some(false);
                    }
                }
                then(act, ctx);
                act.schedule_linger(ctx);
            },
        );
    }

    /// A session comes up. One that authenticated with stored credentials needs the
    /// account to exist, and to be the account it authenticated against (not removed
    /// since); an anonymous one must not join a registered account. Otherwise its
    /// stream ends with `not-authorized`.
    fn attach(
        &mut self,
        resource: String,
        session: SessionRef,
        tls: bool,
        authenticated_at: Option<std::time::Instant>,
        ctx: &mut Context<Self>,
    ) {
        let refused = match authenticated_at {
            Some(at) => {
                self.state.exists != Some(true)
                    || self.removal != register::Removal::None
                    || self
                        .ctx
                        .removals
                        .removed_since(self.state.bare.as_str(), at)
            }
            None => self.state.exists == Some(true),
        };
        if refused {
            slog::warn!(self.log, # "XMPPI", "session refused: the account it authenticated for is gone"; "resource" => &resource);
            session.do_send(ToSession::Close(StreamError::with_text(
                Condition::NotAuthorized,
                "the account does not exist",
            )));
            return;
        }
        let fx = self.state.attach(&resource);
        self.sessions.insert(resource, session, tls);
        self.carry_out(fx, None, ctx);
    }
}

impl Handler<ToAccount> for Account {
    type Result = ();
    fn handle(&mut self, m: ToAccount, ctx: &mut Context<Self>) {
        match m {
            ToAccount::Signal(sig) => self.inbound(sig, ctx),
            ToAccount::Attach {
                resource,
                session,
                tls,
                authenticated_at,
            } => {
                let stale =
                    self.removal != register::Removal::None || self.state.exists == Some(false);
                if authenticated_at.is_some() && stale {
                    // removed, or not there when last looked: maybe registered
                    // (again) since, so start from what is stored now
                    self.load_then(ctx, move |act, ctx| {
                        act.attach(resource, session, tls, authenticated_at, ctx);
                        act.schedule_linger(ctx);
                    });
                } else {
                    self.attach(resource, session, tls, authenticated_at, ctx);
                }
            }
            ToAccount::Detach { resource } if self.sessions.get(&resource).is_none() => {}
            ToAccount::Detach { resource } => {
                // the effects still write to the resource that leaves
                let fx = self.state.detach(&resource);
                self.carry_out(fx, None, ctx);
                self.sessions.remove(&resource);
            }
            // a session this account did not take, or a removal under way or done:
            // nothing it sends is written for the account
            ToAccount::FromClient { resource, .. } if self.sessions.get(&resource).is_none() => {}
            ToAccount::FromClient { resource, stanza }
                if self.removal != register::Removal::None =>
            {
                self.after_removal(&resource, &stanza)
            }
            ToAccount::Remove { done } => self.removal_by_admin(done, ctx),
            ToAccount::FromClient { resource, stanza } => match stanza.name() {
                "presence" => {
                    let fx = self.state.client_presence(&resource, stanza);
                    self.carry_out(fx, None, ctx);
                }
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
        // the mailbox has its full size before anyone can send to it: messages sent
        // before the actor ran `started` on its arbiter would otherwise meet actix's
        // default of 16, park their sender, and be refused
        let (tx, rx) = actix::dev::channel::channel(MAILBOX);
        let run = move || {
            let actx = Context::with_receiver(rx);
            actix_rt::spawn(actx.into_future(Account::new(bare, ctx)));
        };
        match worker {
            Some(w) => {
                w.spawn_fn(run);
            }
            None => run(),
        }
        AccountRef::new(Addr::new(tx).recipient())
    }
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopAccount;

impl Handler<StopAccount> for Account {
    type Result = ();
    fn handle(&mut self, _: StopAccount, ctx: &mut Context<Self>) {
        // stores queued after the registry's idle answer are answered first (a stopping
        // actor polls nothing, and a refused store would never go back to its sender)
        pipeline::Acks { spawned: false }
            .map(|(), _, ctx: &mut Context<Self>| ctx.stop())
            .wait(ctx);
    }
}

/// The session of each bound resource, and whether its stream runs TLS: a handful at
/// most, so a vector.
#[derive(Default)]
struct Sessions(Vec<(String, SessionRef, bool)>);

impl Sessions {
    fn get(&self, name: &str) -> Option<&SessionRef> {
        self.0.iter().find(|(n, ..)| n == name).map(|(_, r, _)| r)
    }

    /// The resource's stream runs TLS.
    fn tls(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, tls)| n == name && *tls)
    }

    fn insert(&mut self, name: String, r: SessionRef, tls: bool) {
        self.remove(&name);
        self.0.push((name, r, tls));
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, ..)| n != name);
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn all(&self) -> impl Iterator<Item = &SessionRef> {
        self.0.iter().map(|(_, r, _)| r)
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

    /// In-band registration (XEP-0077) of the account's own resources: what is on
    /// file, password change, removal.
    ///
    /// Anyone else asking is answered `service-unavailable` (XEP-0077 is between an
    /// entity and its own host).
    pub fn register(acc: &mut Account, caller: Caller, iq: Element, ctx: &mut Context<Account>) {
        match caller {
            Caller::Own(resource) => acc.register_iq(resource, iq, ctx),
            Caller::Other(sig) => acc.bounce(&sig, ErrorCondition::ServiceUnavailable, None),
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

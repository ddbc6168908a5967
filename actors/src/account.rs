//! The account actor: one per account with activity (bound sessions, or signals to
//! process while it is offline). It is the single writer of the account's durable
//! state — roster, subscription requests, offline messages, vCard, private XML,
//! blocklist — and runs presence (RFC 6121 §4) and subscriptions (§3) for it.

use crate::blocking::{self, Request as BlockRequest};
use crate::context::Ctx;
use crate::ns;
use crate::offline;
use crate::registry::AccountIdle;
use crate::roster::{self, Change, Item, State};
use crate::server_iq::{self, Addressee};
use crate::session::{BlocklistUpdate, Session, Write};
use crate::signals::{Signal, SubscribeKind};
use crate::stanza::{self, ErrorCondition, set_attr};
use crate::storage::{RosterData, StorageError};
use actix::prelude::*;
use minidom::Element;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use xmpp_parsers::jid::{BareJid, Jid};

/// How long an account actor with no sessions stays around.
const LINGER: Duration = Duration::from_secs(30);

pub const NS_VCARD: &str = "vcard-temp";
pub const NS_PRIVATE: &str = "jabber:iq:private";

/// One bound resource of the account.
struct Resource {
    addr: Addr<Session>,
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
            self.ctx.registry.do_send(sig);
        }
    }

    fn bounce(&self, sig: &Signal, cond: ErrorCondition, text: Option<&str>) {
        if let Some(b) = sig.bounce(cond, text) {
            self.ctx.registry.do_send(b);
        }
    }

    fn write(&self, resource: &str, el: Element) {
        if let Some(r) = self.resources.get(resource) {
            r.addr.do_send(Write(el));
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

    // ---------------------------------------------------------------- roster --

    fn state_of(&self, contact: &str) -> State {
        let item = self.roster.get(contact);
        State {
            sub: item.map(|i| i.sub).unwrap_or_default(),
            pending_out: item.is_some_and(|i| i.ask),
            pending_in: self.pending.contains_key(contact),
        }
    }

    /// Apply a new subscription state to the roster: store and push what changed.
    fn set_state(
        &mut self,
        contact: &str,
        s: State,
        approved: Option<bool>,
        ctx: &mut Context<Self>,
    ) {
        let before = self.roster.get(contact).cloned();
        let mut item = before.clone().unwrap_or_else(|| Item::new(contact));
        item.sub = s.sub;
        item.ask = s.pending_out;
        if let Some(a) = approved {
            item.approved = a;
        }
        if item.sub.from() {
            item.approved = false;
        }
        // an item exists once either side has asked for something
        let keep = before.is_some() || item.sub != roster::Sub::None || item.ask || item.approved;
        if keep && before.as_ref() != Some(&item) {
            self.ver += 1;
            let (i, v) = (item.clone(), self.ver);
            self.store(
                ctx,
                move |b, d, u| b.roster_put(d, u, &i, v),
                |act, r, _| act.log_storage_error("roster", r),
            );
            self.roster.insert(contact.to_string(), item.clone());
            self.push(item.to_element());
        }
        if !s.pending_in && self.pending.remove(contact).is_some() {
            let c = contact.to_string();
            self.store(
                ctx,
                move |b, d, u| b.pending_in(d, u, &c, None),
                |act, r, _| act.log_storage_error("pending", r),
            );
        }
    }

    /// Roster push to every resource that asked for the roster.
    fn push(&self, item: Element) {
        for (res, r) in self.resources.iter() {
            if r.roster_interest {
                r.addr.do_send(Write(roster::push(
                    self.full(res).as_str(),
                    self.ver,
                    item.clone(),
                )));
            }
        }
    }

    fn roster_iq(&mut self, resource: &str, iq: Element, ctx: &mut Context<Self>) {
        let Some(query) = server_iq::single_payload(&iq).cloned() else {
            return;
        };
        if iq.attr("type") == Some("get") {
            if let Some(r) = self.resources.get_mut(resource) {
                r.roster_interest = true;
            }
            // RFC 6121 §2.6: an up-to-date cached roster gets an empty result
            let reply = if query.attr("ver") == Some(self.ver.to_string().as_str()) {
                stanza::iq_result(&iq, None)
            } else {
                stanza::iq_result(
                    &iq,
                    Some(roster::query(Some(self.ver), self.roster.values())),
                )
            };
            return self.write(resource, reply);
        }
        match roster::parse_set(&query) {
            Err((cond, text)) => {
                if let Some(e) = stanza::error_reply(&iq, cond, Some(text)) {
                    self.write(resource, e);
                }
            }
            Ok(Change::Update { jid, name, groups }) => {
                let contact = jid.to_string();
                let mut item = self
                    .roster
                    .get(&contact)
                    .cloned()
                    .unwrap_or_else(|| Item::new(&contact));
                item.name = name;
                item.groups = groups;
                self.ver += 1;
                let (i, v) = (item.clone(), self.ver);
                let res = resource.to_string();
                self.store(
                    ctx,
                    move |b, d, u| b.roster_put(d, u, &i, v),
                    move |act, r, _| {
                        let reply = match r {
                            Ok(()) => {
                                act.roster.insert(contact, item.clone());
                                act.push(item.to_element());
                                Some(stanza::iq_result(&iq, None))
                            }
                            Err(e) => {
                                slog::error!(act.log, "roster set failed"; "error" => %e);
                                stanza::error_reply(&iq, ErrorCondition::InternalServerError, None)
                            }
                        };
                        if let Some(r) = reply {
                            act.write(&res, r);
                        }
                    },
                );
            }
            Ok(Change::Remove { jid }) => {
                let contact = jid.to_string();
                let Some(item) = self.roster.get(&contact).cloned() else {
                    if let Some(e) = stanza::error_reply(&iq, ErrorCondition::ItemNotFound, None) {
                        self.write(resource, e);
                    }
                    return;
                };
                // RFC 6121 §2.5.2: cancel both directions of the subscription
                if item.sub.to() || item.ask {
                    self.route(self.subscription_stanza(&contact, "unsubscribe"));
                }
                if item.sub.from() || self.pending.contains_key(&contact) {
                    self.route(self.subscription_stanza(&contact, "unsubscribed"));
                }
                if item.sub.from() {
                    self.send_unavailable_to(&contact);
                }
                self.pending.remove(&contact);
                self.roster.remove(&contact);
                self.ver += 1;
                let (c, v) = (contact.clone(), self.ver);
                self.store(
                    ctx,
                    move |b, d, u| b.roster_remove(d, u, &c, v),
                    |act, r, _| act.log_storage_error("roster remove", r),
                );
                self.push(roster::removed_item(&contact));
                self.write(resource, stanza::iq_result(&iq, None));
            }
        }
    }

    /// A subscription stanza from the user's bare JID to a contact.
    fn subscription_stanza(&self, contact: &str, ty: &str) -> Element {
        let mut p = Element::bare("presence", ns::CLIENT);
        set_attr(&mut p, "from", self.bare.as_str());
        set_attr(&mut p, "to", contact);
        set_attr(&mut p, "type", ty);
        p
    }

    // -------------------------------------------------------------- presence --

    fn available(&self) -> impl Iterator<Item = (&String, &Resource)> {
        self.resources.iter().filter(|(_, r)| r.presence.is_some())
    }

    /// The current presence of every available resource, to `to`.
    fn send_presence_to(&self, to: &str) {
        for (res, r) in self.available() {
            if let Some(mut p) = r.presence_element() {
                set_attr(&mut p, "from", self.full(res).as_str());
                set_attr(&mut p, "to", to);
                self.route(p);
            }
        }
    }

    /// Unavailable presence from every available resource, to `to`.
    fn send_unavailable_to(&self, to: &str) {
        for (res, _) in self.available() {
            self.route(unavailable(self.full(res).as_str(), to));
        }
    }

    fn client_presence(&mut self, resource: &str, mut p: Element, ctx: &mut Context<Self>) {
        let to = match stanza::jid_attr(&p, "to") {
            Ok(t) => t,
            Err(_) => return,
        };
        let ty = p.attr("type").map(str::to_string);
        let kind = match ty.as_deref() {
            Some("subscribe") => Some(SubscribeKind::Subscribe),
            Some("subscribed") => Some(SubscribeKind::Subscribed),
            Some("unsubscribe") => Some(SubscribeKind::Unsubscribe),
            Some("unsubscribed") => Some(SubscribeKind::Unsubscribed),
            Some("probe") => return, // clients do not probe (RFC 6121 §4.3)
            _ => None,
        };
        match (to, kind) {
            (Some(to), Some(kind)) => {
                self.outbound_subscription(p, to.to_bare().to_string(), kind, ctx)
            }
            (Some(to), None) => {
                // directed presence
                let target = to.to_string();
                let subscribed = self
                    .roster
                    .get(to.to_bare().as_str())
                    .is_some_and(|i| i.sub.from());
                if let Some(r) = self.resources.get_mut(resource) {
                    match ty.as_deref() {
                        None if !subscribed => {
                            r.directed.insert(target);
                        }
                        Some("unavailable") => {
                            r.directed.remove(&target);
                        }
                        _ => {}
                    }
                }
                self.route(p);
            }
            (None, None) => {
                stanza::remove_attr(&mut p, "to");
                match ty.as_deref() {
                    None => self.broadcast_available(resource, p, ctx),
                    Some("unavailable") => self.broadcast_unavailable(resource, Some(p)),
                    _ => {}
                }
            }
            (None, Some(_)) => {}
        }
    }

    fn broadcast_available(&mut self, resource: &str, p: Element, ctx: &mut Context<Self>) {
        let full = self.full(resource).to_string();
        let priority = p
            .get_child("priority", ns::CLIENT)
            .and_then(|e| e.text().trim().parse::<i8>().ok())
            .unwrap_or(0);
        let Some(r) = self.resources.get_mut(resource) else {
            return;
        };
        let initial = r.presence.is_none();
        r.presence = Some(crate::xml_writer::to_string(&p).into());
        r.priority = priority;
        // to contacts subscribed to the user's presence
        for (contact, item) in &self.roster {
            if item.sub.from() && !self.is_blocked_str(contact) {
                let mut q = p.clone();
                set_attr(&mut q, "to", contact);
                self.route(q);
            }
        }
        // to every available resource of the user, this one included (RFC 6121 §4.2.2)
        for (res, r) in self.available() {
            let mut q = p.clone();
            set_attr(&mut q, "to", self.full(res).as_str());
            r.addr.do_send(Write(q));
        }
        // XEP-0160: stored messages go to the first resource available at priority >= 0
        let offline_due = priority >= 0 && !r_offline_done(&mut self.resources, resource);
        if !initial {
            if offline_due {
                self.deliver_offline(resource, ctx);
            }
            return;
        }
        // probe the contacts whose presence the user wants
        for (contact, item) in &self.roster {
            if item.sub.to() {
                let mut probe = Element::bare("presence", ns::CLIENT);
                set_attr(&mut probe, "from", &full);
                set_attr(&mut probe, "to", contact);
                set_attr(&mut probe, "type", "probe");
                self.route(probe);
            }
        }
        // the other resources' presence, to the new one
        for (res, r) in self.available() {
            if res != resource
                && let Some(mut q) = r.presence_element()
            {
                set_attr(&mut q, "to", &full);
                self.write(resource, q);
            }
        }
        // subscription requests that waited for the user
        for stanza in self.pending.values() {
            if let Ok(mut el) = stanza.parse::<Element>() {
                set_attr(&mut el, "to", self.bare.as_str());
                self.write(resource, el);
            }
        }
        if offline_due {
            self.deliver_offline(resource, ctx);
        }
    }

    fn broadcast_unavailable(&mut self, resource: &str, p: Option<Element>) {
        let full = self.full(resource).to_string();
        let Some(r) = self.resources.get_mut(resource) else {
            return;
        };
        if r.presence.is_none() && r.directed.is_empty() {
            return;
        }
        let was_available = r.presence.take().is_some();
        let directed = std::mem::take(&mut r.directed);
        let p = p.unwrap_or_else(|| unavailable(&full, ""));
        let mut sent = BTreeSet::new();
        if was_available {
            for (contact, item) in &self.roster {
                if item.sub.from() {
                    let mut q = p.clone();
                    set_attr(&mut q, "from", &full);
                    set_attr(&mut q, "to", contact);
                    self.route(q);
                    sent.insert(contact.clone());
                }
            }
            // the user's other available resources, and this one
            let mut targets: Vec<(String, Addr<Session>)> = self
                .available()
                .map(|(res, r)| (self.full(res).to_string(), r.addr.clone()))
                .collect();
            if let Some(me) = self.resources.get(resource) {
                targets.push((full.clone(), me.addr.clone()));
            }
            for (to, addr) in targets {
                let mut q = p.clone();
                set_attr(&mut q, "from", &full);
                set_attr(&mut q, "to", &to);
                addr.do_send(Write(q));
            }
        }
        for to in directed {
            if !sent.contains(&to) {
                let mut q = p.clone();
                set_attr(&mut q, "from", &full);
                set_attr(&mut q, "to", &to);
                self.route(q);
            }
        }
    }

    fn deliver_offline(&mut self, resource: &str, ctx: &mut Context<Self>) {
        if !self.offline_waiting {
            return;
        }
        let res = resource.to_string();
        self.store(ctx, move |b, d, u| b.offline_list(d, u), move |act, r, ctx| {
            let msgs = match r {
                Ok(m) => m,
                Err(e) => return slog::error!(act.log, "offline messages not loaded"; "error" => %e),
            };
            // what is stored from now on sets it again
            act.offline_waiting = false;
            let Some(last) = msgs.last().map(|(id, _)| *id) else { return };
            let Some(target) = act.resources.get(&res) else { return };
            for (_, xml) in &msgs {
                match xml.parse::<Element>() {
                    Ok(el) => target.addr.do_send(Write(el)),
                    Err(e) => slog::error!(act.log, "unreadable offline message dropped"; "error" => %e),
                }
            }
            slog::info!(act.log, "offline messages delivered"; "count" => msgs.len(), "to" => &res);
            act.store(ctx, move |b, d, u| b.offline_delete(d, u, last), |act, r, _| act.log_storage_error("offline delete", r));
        });
    }

    // --------------------------------------------------------- subscriptions --

    fn outbound_subscription(
        &mut self,
        mut p: Element,
        contact: String,
        kind: SubscribeKind,
        ctx: &mut Context<Self>,
    ) {
        // RFC 6121 §3.1.2: the user's bare JID, the contact's bare JID
        set_attr(&mut p, "from", self.bare.as_str());
        set_attr(&mut p, "to", &contact);
        let s = self.state_of(&contact);
        let out = roster::outbound(s, kind);
        match kind {
            SubscribeKind::Subscribed if !out.forward => {
                // pre-approval (RFC 6121 §3.4) when nothing is pending
                if !s.sub.from() && !s.pending_in {
                    self.set_state(&contact, s, Some(true), ctx);
                }
                return;
            }
            SubscribeKind::Unsubscribed if !out.forward => {
                if self.roster.get(&contact).is_some_and(|i| i.approved) {
                    self.set_state(&contact, s, Some(false), ctx);
                }
                return;
            }
            _ => {}
        }
        self.set_state(&contact, out.state, None, ctx);
        if out.forward || matches!(kind, SubscribeKind::Subscribe | SubscribeKind::Unsubscribe) {
            self.route(p);
        }
        match kind {
            // the contact may now see the user's presence
            SubscribeKind::Subscribed if out.forward => self.send_presence_to(&contact),
            SubscribeKind::Unsubscribed if out.forward => self.send_unavailable_to(&contact),
            _ => {}
        }
    }

    fn inbound_subscription(&mut self, sig: Signal, kind: SubscribeKind, ctx: &mut Context<Self>) {
        let contact = sig.from().to_bare().to_string();
        if self.exists != Some(true) {
            // RFC 6121 §3.1.3: no such user
            if kind == SubscribeKind::Subscribe {
                let mut p = Element::bare("presence", ns::CLIENT);
                set_attr(&mut p, "from", self.bare.as_str());
                set_attr(&mut p, "to", &contact);
                set_attr(&mut p, "type", "unsubscribed");
                self.route(p);
            }
            return;
        }
        if self.is_blocked(sig.from()) {
            return;
        }
        if kind == SubscribeKind::Probe {
            return self.probe(sig);
        }
        let mut p = sig.into_stanza();
        set_attr(&mut p, "from", &contact);
        set_attr(&mut p, "to", self.bare.as_str());
        let s = self.state_of(&contact);
        if kind == SubscribeKind::Subscribe {
            let approved = self.roster.get(&contact).is_some_and(|i| i.approved);
            if s.sub.from() || approved {
                // already subscribed, or pre-approved: the server answers for the user
                if !s.sub.from() {
                    let n = State {
                        sub: if s.sub.to() {
                            roster::Sub::Both
                        } else {
                            roster::Sub::From
                        },
                        pending_in: false,
                        ..s
                    };
                    self.set_state(&contact, n, Some(false), ctx);
                }
                let mut ok = Element::bare("presence", ns::CLIENT);
                set_attr(&mut ok, "from", self.bare.as_str());
                set_attr(&mut ok, "to", &contact);
                set_attr(&mut ok, "type", "subscribed");
                self.route(ok);
                self.send_presence_to(&contact);
                return;
            }
        }
        let out = roster::inbound(s, kind);
        if !out.forward {
            return;
        }
        if kind == SubscribeKind::Subscribe {
            self.pending
                .insert(contact.clone(), crate::xml_writer::to_string(&p));
            let (c, x) = (contact.clone(), crate::xml_writer::to_string(&p));
            self.store(
                ctx,
                move |b, d, u| b.pending_in(d, u, &c, Some(&x)),
                |act, r, _| act.log_storage_error("pending", r),
            );
        }
        self.set_state(&contact, out.state, None, ctx);
        for (_, r) in self.available() {
            r.addr.do_send(Write(p.clone()));
        }
        if kind == SubscribeKind::Unsubscribe {
            // the contact no longer receives the user's presence
            self.send_unavailable_to(&contact);
        }
    }

    /// RFC 6121 §4.3.2: answer a probe from a contact subscribed to the user.
    fn probe(&self, sig: Signal) {
        let contact = sig.from().to_bare();
        let subscribed = self
            .roster
            .get(contact.as_str())
            .is_some_and(|i| i.sub.from())
            || contact == self.bare;
        if !subscribed {
            return;
        }
        let to = sig.from().to_string();
        if self.available().next().is_some() {
            self.send_presence_to(&to);
        } else {
            self.route(unavailable(self.bare.as_str(), &to));
        }
    }

    // --------------------------------------------------------------- blocking --

    fn is_blocked(&self, jid: &Jid) -> bool {
        blocking::blocks(&self.blocklist, jid)
    }

    fn is_blocked_str(&self, jid: &str) -> bool {
        Jid::new(jid).map(|j| self.is_blocked(&j)).unwrap_or(false)
    }

    fn blocking_iq(&mut self, resource: &str, iq: Element, ctx: &mut Context<Self>) {
        let Some(payload) = server_iq::single_payload(&iq) else {
            return;
        };
        let req = match blocking::parse(payload, iq.attr("type").unwrap_or("")) {
            Ok(r) => r,
            Err(c) => {
                if let Some(e) = stanza::error_reply(&iq, c, None) {
                    self.write(resource, e);
                }
                return;
            }
        };
        let (changed, push) = match req {
            BlockRequest::Get => {
                if let Some(r) = self.resources.get_mut(resource) {
                    r.block_interest = true;
                }
                let reply =
                    stanza::iq_result(&iq, Some(blocking::element("blocklist", &self.blocklist)));
                return self.write(resource, reply);
            }
            BlockRequest::Block(jids) => {
                let new: Vec<String> = jids
                    .into_iter()
                    .filter(|j| !self.blocklist.contains(j))
                    .collect();
                for j in &new {
                    // the newly blocked stop seeing the user (XEP-0191 §3.3)
                    if let Ok(jid) = Jid::new(j) {
                        let bare = jid.to_bare().to_string();
                        if self.roster.get(&bare).is_some_and(|i| i.sub.from()) {
                            self.send_unavailable_to(j);
                        }
                    }
                    self.blocklist.push(j.clone());
                }
                (!new.is_empty(), blocking::element("block", &new))
            }
            BlockRequest::Unblock(jids) => {
                let removed: Vec<String> = if jids.is_empty() {
                    std::mem::take(&mut self.blocklist)
                } else {
                    let r: Vec<String> = jids
                        .iter()
                        .filter(|j| self.blocklist.contains(j))
                        .cloned()
                        .collect();
                    self.blocklist.retain(|b| !jids.contains(b));
                    r
                };
                // unblocking everything is pushed as an empty <unblock/>
                let push_items = if jids.is_empty() {
                    Vec::new()
                } else {
                    removed.clone()
                };
                (
                    !removed.is_empty() || jids.is_empty(),
                    blocking::element("unblock", &push_items),
                )
            }
        };
        let list = self.blocklist.clone();
        let res = resource.to_string();
        self.store(
            ctx,
            move |b, d, u| b.blocklist_set(d, u, &list),
            move |act, r, _| {
                let reply = match r {
                    Ok(()) => Some(stanza::iq_result(&iq, None)),
                    Err(e) => {
                        slog::error!(act.log, "blocklist not stored"; "error" => %e);
                        stanza::error_reply(&iq, ErrorCondition::InternalServerError, None)
                    }
                };
                if let Some(r) = reply {
                    act.write(&res, r);
                }
                if changed {
                    let shared = std::sync::Arc::new(act.blocklist.clone());
                    for (name, r) in act.resources.iter() {
                        r.addr.do_send(BlocklistUpdate(shared.clone()));
                        if r.block_interest {
                            let mut iq = Element::bare("iq", ns::CLIENT);
                            set_attr(&mut iq, "type", "set");
                            set_attr(&mut iq, "id", &format!("block{:x}", rand::random::<u32>()));
                            set_attr(&mut iq, "to", act.full(name).as_str());
                            iq.append_child(push.clone());
                            r.addr.do_send(Write(iq));
                        }
                    }
                }
            },
        );
    }

    // ------------------------------------------------------ vCard, private XML --

    fn document_iq(
        &mut self,
        resource: Option<&str>,
        iq: Element,
        from_other: Option<Signal>,
        ctx: &mut Context<Self>,
    ) {
        let Some(payload) = server_iq::single_payload(&iq).cloned() else {
            return;
        };
        let get = iq.attr("type") == Some("get");
        let (key, empty) = if payload.is("vCard", NS_VCARD) {
            ("vcard-temp".to_string(), Element::bare("vCard", NS_VCARD))
        } else {
            // XEP-0049: exactly one child, in a namespace of its own
            let mut kids = payload.children();
            let (Some(child), None) = (kids.next(), kids.next()) else {
                return self.answer(
                    resource,
                    &iq,
                    Err(ErrorCondition::NotAcceptable),
                    from_other,
                );
            };
            let cns = child.ns();
            if cns == NS_PRIVATE || cns == ns::CLIENT || cns == ns::SERVER {
                return self.answer(
                    resource,
                    &iq,
                    Err(ErrorCondition::NotAcceptable),
                    from_other,
                );
            }
            (format!("private:{}:{cns}", child.name()), child.clone())
        };
        let res = resource.map(str::to_string);
        let is_vcard = payload.is("vCard", NS_VCARD);
        if get {
            self.store(
                ctx,
                move |b, d, u| b.document_get(d, u, &key),
                move |act, r, _| {
                    let result = match r {
                        Ok(doc) => {
                            let el = doc.and_then(|x| x.parse::<Element>().ok()).unwrap_or(empty);
                            Ok(Some(if is_vcard {
                                el
                            } else {
                                let mut q = Element::bare("query", NS_PRIVATE);
                                q.append_child(el);
                                q
                            }))
                        }
                        Err(e) => {
                            slog::error!(act.log, "document not loaded"; "error" => %e);
                            Err(ErrorCondition::InternalServerError)
                        }
                    };
                    act.answer_payload(res.as_deref(), &iq, result, from_other);
                },
            );
        } else {
            let doc = if is_vcard {
                crate::xml_writer::to_string(&payload)
            } else {
                crate::xml_writer::to_string(&empty)
            };
            self.store(
                ctx,
                move |b, d, u| b.document_set(d, u, &key, &doc),
                move |act, r, _| {
                    let result = r.map(|_| ()).map_err(|e| {
                        slog::error!(act.log, "document not stored"; "error" => %e);
                        ErrorCondition::InternalServerError
                    });
                    act.answer(res.as_deref(), &iq, result, from_other);
                },
            );
        }
    }

    fn answer(
        &mut self,
        resource: Option<&str>,
        iq: &Element,
        r: Result<(), ErrorCondition>,
        from_other: Option<Signal>,
    ) {
        self.answer_payload(resource, iq, r.map(|_| None), from_other)
    }

    /// Reply to an iq from one of the user's resources, or (routed) to another entity.
    fn answer_payload(
        &mut self,
        resource: Option<&str>,
        iq: &Element,
        r: Result<Option<Element>, ErrorCondition>,
        from_other: Option<Signal>,
    ) {
        let reply = match r {
            Ok(p) => Some(stanza::iq_result(iq, p)),
            Err(c) => stanza::error_reply(iq, c, None),
        };
        let Some(reply) = reply else { return };
        match (resource, from_other) {
            (Some(res), _) => self.write(res, reply),
            (None, Some(_)) => self.route(reply),
            _ => {}
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

    fn inbound_message(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        if self.exists != Some(true) || self.is_blocked(sig.from()) {
            return self.bounce(&sig, ErrorCondition::ServiceUnavailable, None);
        }
        // became available since the registry looked: deliver now
        let best = self
            .available()
            .map(|(_, r)| r.priority)
            .filter(|p| *p >= 0)
            .max();
        if let Some(best) = best {
            for (_, r) in self.available().filter(|(_, r)| r.priority == best) {
                r.addr.do_send(sig.clone());
            }
            return;
        }
        let mut msg = sig.stanza().clone();
        if !offline::should_store(&msg) {
            return;
        }
        offline::stamp(&mut msg, &self.domain, std::time::SystemTime::now());
        let xml = crate::xml_writer::to_string(&msg);
        let limit = self.ctx.settings.get().storage.max_offline_messages;
        self.store(
            ctx,
            move |b, d, u| b.offline_push(d, u, &xml, limit),
            move |act, r, _| match r {
                Ok(()) => {
                    act.offline_waiting = true;
                    slog::info!(act.log, "message stored offline"; "from" => %sig.from())
                }
                Err(StorageError::Full) => {
                    slog::warn!(act.log, "offline storage full"; "from" => %sig.from());
                    act.bounce(
                        &sig,
                        ErrorCondition::ServiceUnavailable,
                        Some("offline storage is full"),
                    );
                }
                Err(e) => {
                    slog::warn!(act.log, "offline message not stored"; "error" => %e);
                    act.bounce(
                        &sig,
                        ErrorCondition::InternalServerError,
                        Some("message could not be stored"),
                    );
                }
            },
        );
    }

    fn inbound_iq(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        if self.exists != Some(true) || self.is_blocked(sig.from()) {
            return self.bounce(&sig, ErrorCondition::ServiceUnavailable, None);
        }
        let iq = sig.stanza().clone();
        let vcard_get = iq.attr("type") == Some("get")
            && server_iq::single_payload(&iq).is_some_and(|p| p.is("vCard", NS_VCARD));
        if vcard_get {
            return self.document_iq(None, iq, Some(sig), ctx);
        }
        if let Some(reply) = server_iq::handle(&iq, Addressee::Account) {
            self.route(reply);
        }
    }

    fn own_iq(&mut self, resource: &str, iq: Element, ctx: &mut Context<Self>) {
        let Some(payload) = server_iq::single_payload(&iq) else {
            return;
        };
        if payload.is("query", roster::NS_ROSTER) {
            self.roster_iq(resource, iq, ctx)
        } else if payload.has_ns(blocking::NS) {
            self.blocking_iq(resource, iq, ctx)
        } else if payload.is("vCard", NS_VCARD) || payload.is("query", NS_PRIVATE) {
            self.document_iq(Some(resource), iq, None, ctx)
        } else if let Some(e) = stanza::error_reply(&iq, ErrorCondition::ServiceUnavailable, None) {
            self.write(resource, e);
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
                .send(AccountIdle {
                    bare: act.bare.clone(),
                    addr: ctx.address(),
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
        ctx.set_mailbox_capacity(crate::session::MAILBOX);
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

impl Handler<Signal> for Account {
    type Result = ();
    fn handle(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        self.inbound(sig, ctx);
        self.schedule_linger(ctx);
    }
}

/// A session of this account came up.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub resource: String,
    pub session: Addr<Session>,
}

impl Handler<Attach> for Account {
    type Result = ();
    fn handle(&mut self, a: Attach, ctx: &mut Context<Self>) {
        if !self.blocklist.is_empty() {
            a.session
                .do_send(BlocklistUpdate(std::sync::Arc::new(self.blocklist.clone())));
        }
        self.resources.insert(
            a.resource,
            Resource {
                addr: a.session,
                presence: None,
                priority: 0,
                roster_interest: false,
                block_interest: false,
                directed: BTreeSet::new(),
                offline_done: false,
            },
        );
        self.schedule_linger(ctx);
    }
}

/// A session ended (its presence becomes unavailable, RFC 6121 §4.5.3).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub resource: String,
}

impl Handler<Detach> for Account {
    type Result = ();
    fn handle(&mut self, d: Detach, ctx: &mut Context<Self>) {
        self.broadcast_unavailable(&d.resource, None);
        self.resources.remove(&d.resource);
        self.schedule_linger(ctx);
    }
}

/// Presence or an own-account iq from one of the user's resources.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct FromClient {
    pub resource: String,
    pub stanza: Element,
}

impl Handler<FromClient> for Account {
    type Result = ();
    fn handle(&mut self, m: FromClient, ctx: &mut Context<Self>) {
        match m.stanza.name() {
            "presence" => self.client_presence(&m.resource, m.stanza, ctx),
            "iq" => self.own_iq(&m.resource, m.stanza, ctx),
            _ => {}
        }
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

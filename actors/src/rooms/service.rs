//! The room service of one domain (`conference.<domain>` by default): answers disco for
//! the service, starts a `Chatroom` per room on the first stanza that addresses it (a
//! saved room is restored; a new one is created only by entering it), bounds the number
//! of rooms, and lists the public ones.

use super::chatroom::Chatroom;
use super::{Entry, Flush, Listing, RoomIdle, key, limits};
use crate::context::Ctx;
use crate::signals::Signal;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use xmpp_parsers::jid::BareJid;
use xmppd_proto::muc::room::Saved;
use xmppd_proto::muc::{admin, ns};
use xmppd_proto::stanza::{ErrorCondition, iq_result};

struct Running {
    addr: Addr<Chatroom>,
    /// Who created the room, while it runs (the per-user bound).
    creator: Option<BareJid>,
}

pub struct RoomService {
    domain: String,
    ctx: Ctx,
    rooms: HashMap<String, Running>,
    /// Rooms that exist while not running (saved) or that are configured and running,
    /// by key: how disco#items lists them, and which ones can be restored.
    directory: BTreeMap<String, (BareJid, Entry)>,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    log: slog::Logger,
}

/// Stanzas waiting for the service at most (it only forwards them).
pub const MAILBOX: usize = 64 * 1024;

impl RoomService {
    pub fn new(domain: String, ctx: Ctx, workers: Vec<ArbiterHandle>) -> RoomService {
        let log = ctx.log.new(slog::o!("service" => domain.clone()));
        RoomService {
            domain,
            ctx,
            rooms: HashMap::new(),
            directory: BTreeMap::new(),
            workers,
            next_worker: 0,
            log,
        }
    }

    fn bounce(&self, sig: &Signal, cond: ErrorCondition, text: &str) {
        if let Some(b) = sig.bounce(cond, Some(text)) {
            self.ctx.registry.route(b);
        }
    }

    /// A stanza to the service itself.
    fn for_service(&self, sig: Signal) {
        let st = sig.stanza();
        match (&sig, st.attr("type")) {
            (Signal::Info(_), Some("get")) => {
                let q = st.children().next();
                let payload = match q.map(|q| (q.name(), q.ns())) {
                    Some(("query", n)) if n == ns::DISCO_INFO => {
                        Some(admin::service_info("Chat rooms"))
                    }
                    Some(("query", n)) if n == ns::DISCO_ITEMS => {
                        let public: Vec<(String, String)> = self
                            .directory
                            .values()
                            .filter(|(_, e)| e.public)
                            .map(|(j, e)| (j.to_string(), e.name.clone()))
                            .collect();
                        Some(admin::service_items(&public))
                    }
                    Some(("ping", n)) if n == ns::PING => None,
                    _ => {
                        return self.bounce(
                            &sig,
                            ErrorCondition::ServiceUnavailable,
                            "not answered here",
                        );
                    }
                };
                if let Some(r) =
                    Signal::new(sig.to().clone(), sig.from().clone(), iq_result(st, payload))
                {
                    self.ctx.registry.route(r);
                }
            }
            (Signal::Info(_), Some("set")) | (Signal::Message(_), _) => {
                self.bounce(&sig, ErrorCondition::ServiceUnavailable, "address a room")
            }
            _ => {}
        }
    }

    fn start_room(
        &mut self,
        jid: BareJid,
        restore: bool,
        creator: Option<BareJid>,
        ctx: &mut Context<Self>,
    ) -> Addr<Chatroom> {
        let (domain, rctx, me, lim) = (
            self.domain.clone(),
            self.ctx.clone(),
            ctx.address(),
            limits(&self.ctx.settings.get().muc),
        );
        let j = jid.clone();
        let make =
            move |_: &mut Context<Chatroom>| Chatroom::new(j, domain, restore, lim, rctx, me);
        // on a worker: the room reaches its occupants' sessions through that
        // thread's replica of the route table
        let addr = match self
            .workers
            .get(self.next_worker % self.workers.len().max(1))
        {
            Some(w) => Chatroom::start_in_arbiter(w, make),
            None => Chatroom::create(make),
        };
        self.next_worker = self.next_worker.wrapping_add(1);
        self.rooms.insert(
            key(&jid),
            Running {
                addr: addr.clone(),
                creator,
            },
        );
        addr
    }
}

impl Actor for RoomService {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        let domain = self.domain.clone();
        let read = self.ctx.storage.clone();
        async move { read.run(move |b| b.room_list(&domain)).await }
            .into_actor(self)
            .map(|r, act, _| match r {
                Ok(rooms) => {
                    for (jid, data) in rooms {
                        let (Ok(j), Ok(s)) = (BareJid::new(&jid), serde_json::from_str::<Saved>(&data)) else {
                            slog::warn!(act.log, "a saved room cannot be read"; "room" => jid);
                            continue;
                        };
                        let creator = s.creator.as_deref().and_then(|c| BareJid::new(c).ok());
                        let entry = Entry { name: s.config.name, public: s.config.public, persistent: true, creator };
                        act.directory.insert(key(&j), (j, entry));
                    }
                    slog::debug!(act.log, "room service started"; "saved rooms" => act.directory.len());
                }
                Err(e) => slog::warn!(act.log, "saved rooms cannot be listed"; "error" => %e),
            })
            .wait(ctx);
    }
}

impl Handler<Signal> for RoomService {
    type Result = ();
    fn handle(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        if sig.to().node().is_none() {
            return self.for_service(sig);
        }
        let jid = sig.to().to_bare();
        let k = key(&jid);
        let sig = match self.rooms.get(&k) {
            Some(r) => match r.addr.try_send(sig) {
                Ok(()) => return,
                Err(SendError::Full(sig)) => {
                    return self.bounce(
                        &sig,
                        ErrorCondition::ResourceConstraint,
                        "the room is overloaded",
                    );
                }
                // stopped on its own: start it again
                Err(SendError::Closed(sig)) => {
                    self.rooms.remove(&k);
                    sig
                }
            },
            None => sig,
        };
        let saved = self.directory.get(&k).is_some_and(|(_, e)| e.persistent);
        let mut creator = None;
        if !saved {
            // only entering creates a room
            let enters = matches!(sig, Signal::Notify(_)) && sig.stanza_type().is_none();
            if !enters {
                if !sig.is_error() && sig.stanza_type() != Some("unavailable") {
                    self.bounce(&sig, ErrorCondition::ItemNotFound, "no such room");
                }
                return;
            }
            let s = self.ctx.settings.get();
            if !xmppd_proto::muc::may_create(&s, &sig.from().to_bare()) {
                return self.bounce(
                    &sig,
                    ErrorCondition::NotAllowed,
                    "only local users may create rooms here",
                );
            }
            if self.rooms.len() >= s.muc.max_rooms {
                return self.bounce(&sig, ErrorCondition::ResourceConstraint, "too many rooms");
            }
            let saved_rooms = self
                .directory
                .values()
                .filter(|(_, e)| e.persistent)
                .count();
            if saved_rooms >= s.muc.max_saved_rooms {
                return self.bounce(
                    &sig,
                    ErrorCondition::ResourceConstraint,
                    "too many saved rooms",
                );
            }
            let user = sig.from().to_bare();
            // running rooms and saved ones (running or not), each room once
            let mine = self
                .rooms
                .iter()
                .filter(|(_, r)| r.creator.as_ref() == Some(&user))
                .map(|(k, _)| k)
                .chain(
                    self.directory
                        .iter()
                        .filter(|(_, (_, e))| e.persistent && e.creator.as_ref() == Some(&user))
                        .map(|(k, _)| k),
                )
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            if mine >= s.muc.max_rooms_per_user {
                return self.bounce(
                    &sig,
                    ErrorCondition::ResourceConstraint,
                    "you have created too many rooms",
                );
            }
            creator = Some(user);
        }
        let addr = self.start_room(jid, saved, creator, ctx);
        if let Err(SendError::Full(sig) | SendError::Closed(sig)) = addr.try_send(sig) {
            self.bounce(
                &sig,
                ErrorCondition::ServiceUnavailable,
                "the room did not start",
            );
        }
    }
}

impl Handler<RoomIdle> for RoomService {
    type Result = bool;
    fn handle(&mut self, m: RoomIdle, _: &mut Context<Self>) -> bool {
        let k = key(&m.jid);
        match self.rooms.get(&k) {
            Some(r) if r.addr == m.addr => {
                self.rooms.remove(&k);
                true
            }
            // already replaced (or forgotten): the old one may stop
            _ => true,
        }
    }
}

impl Handler<Listing> for RoomService {
    type Result = ();
    fn handle(&mut self, m: Listing, _: &mut Context<Self>) {
        let k = key(&m.jid);
        match m.entry {
            Some(e) => {
                self.directory.insert(k, (m.jid, e));
            }
            None => {
                self.directory.remove(&k);
            }
        }
    }
}

impl Handler<Flush> for RoomService {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        let asks: Vec<_> = self.rooms.values().map(|r| r.addr.send(Flush)).collect();
        Box::pin(async move {
            futures::future::join_all(asks).await;
        })
    }
}

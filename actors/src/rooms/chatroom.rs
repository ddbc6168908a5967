//! The `Chatroom` actor: holds one room's state (`xmppd_proto::muc::room::Room`) and
//! carries out the effects of its decisions: stanzas to occupants (a groupchat message
//! serialised once, the same bytes to every session), storage writes, stopping when
//! empty. A persistent room stores its history as it grows: one write at a time, each
//! taking every message that arrived meanwhile, and what is still pending before the
//! actor stops (idle, or [`Flush`] at shutdown).

use super::service::RoomService;
use super::{Entry, Flush, Listing, RoomIdle};
use crate::context::Ctx;
use crate::registry::routes;
use crate::signals::{Serialised, Signal, ToSession};
use actix::prelude::*;
use minidom::Element;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use xmpp_parsers::jid::{BareJid, Jid};
use xmppd_proto::muc::history::{History, Stored};
use xmppd_proto::muc::room::{Room, Saved};
use xmppd_proto::muc::{Effect, Limits, ns};
use xmppd_proto::stanza::{ErrorCondition, set_attr};

pub struct Chatroom {
    jid: BareJid,
    /// The service's domain (what saved rooms are listed under).
    service_domain: String,
    /// `None` while a saved room loads, or when it could not be read.
    room: Option<Room>,
    restore: bool,
    limits: Limits,
    ctx: Ctx,
    service: Addr<RoomService>,
    idle: Option<SpawnHandle>,
    /// The service let the room stop: whatever still arrives is routed again.
    gone: bool,
    listed: Option<Entry>,
    /// The newest history `seq` known to be stored (0: none).
    history_saved: u64,
    /// History writes under way (store_history runs one at a time; a Flush or a stop
    /// may add one).
    history_writing: u32,
    /// Bumped when the stored history is deleted: a write begun before that changes
    /// nothing when it completes.
    epoch: u64,
    /// The last write of the room's row failed: written again (as the room is then)
    /// before the next stanza, before the room stops, and at Flush.
    row_dirty: bool,
    log: slog::Logger,
}

/// A storage write of the room's row.
enum Write {
    Set(String),
    Delete,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Chatroom {
    pub fn new(
        jid: BareJid,
        service_domain: String,
        restore: bool,
        limits: Limits,
        ctx: Ctx,
        service: Addr<RoomService>,
    ) -> Chatroom {
        let log = ctx.log.new(slog::o!("room" => jid.to_string()));
        Chatroom {
            room: (!restore).then(|| Room::new(jid.clone(), limits)),
            jid,
            service_domain,
            restore,
            limits,
            ctx,
            service,
            idle: None,
            gone: false,
            listed: None,
            history_saved: 0,
            history_writing: 0,
            epoch: 0,
            row_dirty: false,
            log,
        }
    }

    /// The room stores its history (it is saved).
    fn stores_history(&self) -> bool {
        self.room
            .as_ref()
            .is_some_and(|r| r.config.persistent && !r.fresh && !r.destroyed)
    }

    /// History messages a persistent room holds and has not stored yet.
    fn unsaved_history(&self) -> Vec<(u64, u64, String)> {
        match &self.room {
            Some(r) if self.stores_history() => r
                .history
                .after(self.history_saved)
                .into_iter()
                .map(|s| (s.seq, s.at, s.xml))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Store the history that grew, unless a write is under way (its completion looks
    /// again): under load one write carries many messages.
    fn store_history(&mut self, ctx: &mut Context<Self>) {
        if self.history_writing > 0
            || !self.stores_history()
            || self
                .room
                .as_ref()
                .is_none_or(|r| r.history.last_seq() <= self.history_saved)
        {
            return;
        }
        self.write_pending()
            .map(|ok, act, ctx| {
                if ok {
                    act.store_history(ctx);
                }
            })
            .spawn(ctx);
    }

    /// Write the history messages not stored yet; `true` once committed (or when there
    /// was nothing to write). Its completion moves `history_saved` on unless the stored
    /// history was deleted meanwhile (`epoch`). The one write of store_history, Flush
    /// and the stop.
    fn write_pending(&mut self) -> impl ActorFuture<Self, Output = bool> + use<> {
        let pending = self.unsaved_history();
        let newest = pending.last().map_or(0, |m| m.0);
        let epoch = self.epoch;
        let (jid, log) = (self.jid.to_string(), self.log.clone());
        let keep = self.room.as_ref().map_or(0, |r| r.history.cap());
        let write = self.ctx.storage.clone();
        self.history_writing += 1;
        async move {
            if pending.is_empty() {
                return true;
            }
            match write
                .run(move |b| b.room_history_add(&jid, pending, keep))
                .await
            {
                Ok(()) => true,
                Err(e) => {
                    slog::warn!(log, "room history not saved"; "error" => %e);
                    false
                }
            }
        }
        .into_actor(self)
        .map(move |ok, act, _| {
            act.history_writing = act.history_writing.saturating_sub(1);
            if ok && act.epoch == epoch {
                act.history_saved = act.history_saved.max(newest);
            }
            ok
        })
    }

    /// The room's row as it is now, when the last write of it failed.
    fn row_retry(&self) -> Option<Write> {
        if !self.row_dirty {
            return None;
        }
        let room = self.room.as_ref()?;
        if room.destroyed || !room.config.persistent {
            Some(Write::Delete)
        } else if room.fresh {
            None
        } else {
            self.saved()
        }
    }

    /// Carry out effects in order. Occupants whose session cannot take more are removed
    /// (status 333), which yields more effects: at most a few rounds.
    fn apply(&mut self, effects: Vec<Effect>, ctx: &mut Context<Self>) {
        let mut effects = effects;
        // a row whose last write failed is written first (one write per stanza)
        let mut writes: Vec<Write> = self.row_retry().into_iter().collect();
        for _ in 0..4 {
            let mut stuck = Vec::new();
            for e in effects {
                match e {
                    Effect::Send(el) => self.send(el, &mut stuck),
                    Effect::Fanout { stanza, to } => self.fanout(&stanza, &to, &mut stuck),
                    Effect::Save => writes.extend(self.saved()),
                    Effect::Delete => {
                        // its stored history goes with it (stored again if it is saved
                        // again); a history write under way changes nothing after it
                        self.history_saved = 0;
                        self.epoch += 1;
                        writes.push(Write::Delete)
                    }
                    // checked after every stanza (a room may be empty without it)
                    Effect::Empty => {}
                }
            }
            effects = Vec::new();
            let Some(room) = self.room.as_mut() else {
                break;
            };
            for jid in stuck {
                let Some(nick) = room.occupants.by_jid(&jid).map(|o| o.nick.clone()) else {
                    continue;
                };
                slog::warn!(self.log, "occupant does not keep up: removed"; "jid" => %jid);
                let to = format!("{}/{nick}", self.jid);
                let mut p = Element::bare("presence", ns::CLIENT);
                set_attr(&mut p, "type", "error");
                set_attr(&mut p, "from", jid.as_str());
                set_attr(&mut p, "to", &to);
                let Ok(to) = Jid::new(&to) else { continue };
                effects.extend(room.handle(&jid, &to, &p, now_ms()));
            }
            if effects.is_empty() {
                break;
            }
        }
        self.write(writes, ctx);
        self.update_listing();
    }

    /// One stanza to one JID: straight to the session when this thread's replica of
    /// the route table knows it (same order as the fan-out), else through the registry.
    fn send(&self, el: Element, stuck: &mut Vec<Jid>) {
        let (Some(Ok(from)), Some(Ok(to))) =
            (el.attr("from").map(Jid::new), el.attr("to").map(Jid::new))
        else {
            return;
        };
        let Some(sig) = Signal::new(from, to.clone(), el) else {
            return;
        };
        let addr = to
            .try_as_full()
            .ok()
            .and_then(|f| routes::with_replica(|t| t.lookup(f)));
        match addr {
            Some(a) => match a.try_send(ToSession::Signal(sig)) {
                Ok(()) => {}
                Err(SendError::Full(_)) => stuck.push(to),
                Err(SendError::Closed(ToSession::Signal(sig))) => self.ctx.registry.route(sig),
                Err(SendError::Closed(_)) => {}
            },
            None => self.ctx.registry.route(sig),
        }
    }

    /// The same message to many: serialised once; each recipient gets those bytes with
    /// its `to` put in after the element name.
    fn fanout(&self, stanza: &Element, to: &[Jid], stuck: &mut Vec<Jid>) {
        let Some(Ok(from)) = stanza.attr("from").map(Jid::new) else {
            return;
        };
        let bytes = xmppd_proto::xml::writer::to_bytes(stanza);
        let head = 1 + stanza.name().len();
        // the writer starts with `<name`; the `to` goes right after it
        let (Some(open), Some(rest)) = (bytes.get(..head), bytes.get(head..)) else {
            return;
        };
        let ty = Serialised::ty_of(stanza);
        for jid in to {
            let mut b = Vec::with_capacity(bytes.len() + jid.as_str().len() + 6);
            b.extend_from_slice(open);
            b.extend_from_slice(b" to='");
            xmppd_proto::xml::escape::escape_into(jid.as_str(), true, &mut b);
            b.push(b'\'');
            b.extend_from_slice(rest);
            let m = Serialised {
                from: from.clone(),
                to: jid.clone(),
                ty,
                bytes: b,
                sent: None,
            };
            let addr = jid
                .try_as_full()
                .ok()
                .and_then(|f| routes::with_replica(|t| t.lookup(f)));
            let back = match addr {
                Some(a) => match a.try_send(ToSession::Serialised(m)) {
                    Ok(()) => continue,
                    Err(SendError::Full(_)) => {
                        stuck.push(jid.clone());
                        continue;
                    }
                    Err(SendError::Closed(ToSession::Serialised(m))) => m,
                    Err(SendError::Closed(_)) => continue,
                },
                None => m,
            };
            if let Some(sig) = back.into_signal() {
                self.ctx.registry.route(sig);
            }
        }
    }

    /// The room as saved now (`None` if it cannot be serialised).
    fn saved(&self) -> Option<Write> {
        let room = self.room.as_ref()?;
        match serde_json::to_string(&room.saved()) {
            Ok(d) => Some(Write::Set(d)),
            Err(e) => {
                slog::error!(self.log, "cannot serialise the room"; "error" => %e);
                None
            }
        }
    }

    /// Carry out a stanza's storage writes, in order, in one `ctx.wait`: later stanzas
    /// wait for the commit. (One wait per stanza: actix runs the waits of one handler
    /// newest first, which would reverse a save and a delete.)
    fn write(&mut self, writes: Vec<Write>, ctx: &mut Context<Self>) {
        if !writes.is_empty() {
            self.row_write(writes).wait(ctx);
        }
    }

    /// The storage writes of the room's row, in order; `row_dirty` says how it went.
    fn row_write(&self, writes: Vec<Write>) -> impl ActorFuture<Self, Output = ()> + use<> {
        let (service, jid) = (self.service_domain.clone(), self.jid.to_string());
        let storage = self.ctx.storage.clone();
        async move {
            if writes.is_empty() {
                return Ok(());
            }
            storage
                .run(move |b| {
                    for w in &writes {
                        match w {
                            Write::Set(data) => b.room_set(&service, &jid, data)?,
                            Write::Delete => b.room_delete(&jid)?,
                        }
                    }
                    Ok(())
                })
                .await
        }
        .into_actor(self)
        .map(|r, act, _| match r {
            // every write is of the whole row: the room is as stored now
            Ok(()) => act.row_dirty = false,
            Err(e) => {
                act.row_dirty = true;
                slog::warn!(act.log, "room not saved"; "error" => %e);
            }
        })
    }

    /// Nobody is left: a temporary (or destroyed) room stops now, a persistent one
    /// after `idle_timeout`.
    fn empty(&mut self, ctx: &mut Context<Self>) {
        let stays = self
            .room
            .as_ref()
            .is_some_and(|r| r.config.persistent && !r.destroyed && !r.fresh);
        if !stays {
            // after the stanza's writes (a spawned item runs once the waits are done;
            // a wait issued now would run before them); someone may have come in
            // meanwhile
            let later = actix::fut::ready(()).map(|(), act: &mut Self, ctx| {
                if act
                    .room
                    .as_ref()
                    .is_none_or(|r| r.destroyed || r.occupants.is_empty())
                {
                    act.stop_if_allowed(ctx);
                }
            });
            ctx.spawn(later);
            return;
        }
        let wait = Duration::from_secs(self.ctx.settings.get().muc.idle_timeout);
        self.idle = Some(ctx.run_later(wait, |act, ctx| {
            if act.room.as_ref().is_some_and(|r| r.occupants.is_empty()) {
                act.stop_if_allowed(ctx);
            }
        }));
    }

    /// Store what is not stored yet (the room's row, if its last write failed, and the
    /// history), and only then ask the service to let the room go: until it answers, the
    /// room's JID still leads here, so a new actor cannot restore stale history. After
    /// a yes the room does not stop itself: the service dropped its address, so the
    /// actor ends once its mailbox is empty, and what is still in it is routed again
    /// (`gone`). When a write fails the room stays and tries again after `idle_timeout`.
    fn stop_if_allowed(&mut self, ctx: &mut Context<Self>) {
        if self.history_writing > 0 {
            // a write under way completes first (it may commit after a later one)
            self.idle = Some(ctx.run_later(Duration::from_millis(20), |act, ctx| {
                if act.room.as_ref().is_none_or(|r| r.occupants.is_empty()) {
                    act.stop_if_allowed(ctx);
                }
            }));
            return;
        }
        slog::debug!(self.log, "room idle: storing what it holds before it stops");
        // one wait: the row, then the history, then the question
        self.row_write(self.row_retry().into_iter().collect())
            .then(|(), act, _| act.write_pending())
            .then(|ok, act, ctx| {
                let ask = (ok && !act.row_dirty).then(|| {
                    act.service.send(RoomIdle {
                        jid: act.jid.clone(),
                        addr: ctx.address(),
                    })
                });
                async move {
                    match ask {
                        Some(a) => Some(a.await.unwrap_or(true)),
                        None => None,
                    }
                }
                .into_actor(act)
            })
            .map(|stop, act, ctx| match stop {
                Some(true) => act.gone = true,
                Some(false) => {}
                None => {
                    slog::warn!(act.log, "room kept: what it holds is not stored yet");
                    let wait = Duration::from_secs(act.ctx.settings.get().muc.idle_timeout);
                    act.idle = Some(ctx.run_later(wait, |act, ctx| {
                        if act.room.as_ref().is_none_or(|r| r.occupants.is_empty()) {
                            act.stop_if_allowed(ctx);
                        }
                    }));
                }
            })
            .wait(ctx);
    }

    /// Tell the service how the room is listed, when that changed.
    fn update_listing(&mut self) {
        let entry = self
            .room
            .as_ref()
            .filter(|r| !r.destroyed && !r.locked && !r.fresh)
            .map(|r| Entry {
                name: r.config.name.clone(),
                public: r.config.public,
                persistent: r.config.persistent,
                creator: r.creator.clone(),
            });
        if entry != self.listed {
            self.listed = entry.clone();
            self.service.do_send(Listing {
                jid: self.jid.clone(),
                entry,
            });
        }
    }
}

impl Actor for Chatroom {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.ctx.settings.get().muc.room_mailbox);
        if !self.restore {
            return;
        }
        let jid = self.jid.to_string();
        let read = self.ctx.storage.clone();
        // everything sent to the room waits until it is loaded
        // a history that cannot be read does not keep the room from working
        async move {
            read.run(move |b| Ok((b.room_get(&jid)?, b.room_history(&jid))))
                .await
        }
        .into_actor(self)
        .map(|r, act, ctx| {
            let saved = match r {
                Ok((Some(data), history)) => serde_json::from_str::<Saved>(&data)
                    .map(|s| (s, history))
                    .map_err(|e| e.to_string()),
                Ok((None, _)) => Err("not found".to_string()),
                Err(e) => Err(e.to_string()),
            };
            match saved {
                Ok((s, history)) => {
                    let mut room = Room::restore(act.jid.clone(), s, act.limits);
                    match history {
                        Ok(history) => {
                            let stored = history
                                .into_iter()
                                .map(|(seq, at, xml)| Stored { seq, at, xml })
                                .collect();
                            room.history = History::restore(act.limits.history, stored);
                        }
                        Err(e) => {
                            slog::warn!(act.log, "room history cannot be read: restored without it"; "error" => %e)
                        }
                    }
                    act.history_saved = room.history.last_seq();
                    act.room = Some(room);
                    act.update_listing();
                }
                Err(e) => {
                    // what is in the mailbox is answered with an error; the service
                    // lets the room go, so the next stanza tries again
                    slog::warn!(act.log, "saved room cannot be read"; "error" => e);
                    act.service
                        .send(RoomIdle {
                            jid: act.jid.clone(),
                            addr: ctx.address(),
                        })
                        .into_actor(act)
                        .map(|_, _, _| ())
                        .spawn(ctx);
                }
            }
        })
        .wait(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        slog::debug!(self.log, "room stopped");
        // a temporary room is gone from the directory; a persistent one stays listed,
        // and so does a saved room that could not be loaded (the next stanza retries)
        if self.room.is_some() && self.listed.as_ref().is_none_or(|e| !e.persistent) {
            self.service.do_send(Listing {
                jid: self.jid.clone(),
                entry: None,
            });
        }
    }
}

impl Handler<Signal> for Chatroom {
    type Result = ();
    fn handle(&mut self, sig: Signal, ctx: &mut Context<Self>) {
        if self.gone {
            // stopped by the service's leave: the service starts the room again
            return self.ctx.registry.route(sig);
        }
        if let Some(h) = self.idle.take() {
            ctx.cancel_future(h);
        }
        let Some(room) = self.room.as_mut() else {
            if let Some(b) = sig.bounce(
                ErrorCondition::InternalServerError,
                Some("the room cannot be loaded"),
            ) {
                self.ctx.registry.route(b);
            }
            return;
        };
        let effects = room.handle(sig.from(), sig.to(), sig.stanza(), now_ms());
        self.apply(effects, ctx);
        self.store_history(ctx);
        if !self.gone && self.room.as_ref().is_none_or(|r| r.occupants.is_empty()) {
            self.empty(ctx);
        }
    }
}

impl Handler<Flush> for Chatroom {
    type Result = ResponseActFuture<Self, ()>;
    /// Reached after every stanza before it and the saves they made (those hold the
    /// mailbox until they commit): store the room's row if its last write failed, and
    /// the history not stored yet.
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        Box::pin(
            self.row_write(self.row_retry().into_iter().collect())
                .then(|(), act, _| act.write_pending())
                .map(|_, _, _| ()),
        )
    }
}

//! Carrying out what the account's decisions ([`xmppd_proto::im::account`]) return:
//! writes to the account's sessions, routed stanzas, storage calls (in order, each run
//! before the next signal is looked at) and their continuations, among them offline
//! messages (XEP-0160) stored and handed over.

use super::*;
use crate::signals::to_session::OfflineBatch;
use xmppd_proto::im::account::{Effect, StoreOp};

/// How long the account waits for a session to take the offline messages handed to it.
const OFFLINE_HANDOVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl Account {
    /// Carry out `effects` in order. `sig` is the inbound signal they were decided on,
    /// for [`Effect::Deliver`], [`Effect::Bounce`] and a failed offline store.
    pub(super) fn carry_out(
        &mut self,
        effects: Vec<Effect>,
        sig: Option<&Signal>,
        ctx: &mut Context<Self>,
    ) {
        // one copy of the blocklist shared by every session that gets it
        let mut blocklist: Option<std::sync::Arc<Vec<String>>> = None;
        for e in effects {
            match e {
                Effect::Write { resource, stanza } => self.write(&resource, stanza),
                Effect::Route(el) => self.route(el),
                Effect::Deliver { resource } => {
                    if let (Some(sig), Some(addr)) = (sig, self.sessions.get(&resource)) {
                        addr.do_send(ToSession::Signal(sig.clone()));
                    }
                }
                Effect::Bounce { condition, text } => {
                    if let Some(sig) = sig {
                        self.bounce(sig, condition, text);
                    }
                }
                Effect::Blocklist { resource } => {
                    if let Some(addr) = self.sessions.get(&resource) {
                        let list = blocklist
                            .get_or_insert_with(|| self.state.blocklist.clone().into())
                            .clone();
                        addr.do_send(ToSession::Blocklist(list));
                    }
                }
                Effect::Store(op) => self.run_store(op, sig, ctx),
            }
        }
    }

    fn run_store(&mut self, op: StoreOp, sig: Option<&Signal>, ctx: &mut Context<Self>) {
        match op {
            StoreOp::RosterPut { item, ver } => self.store(
                ctx,
                move |b, d, u| b.roster_put(d, u, &item, ver),
                |act, r, _| act.log_storage_error("roster", r),
            ),
            StoreOp::RosterRemove { contact, ver } => self.store(
                ctx,
                move |b, d, u| b.roster_remove(d, u, &contact, ver),
                |act, r, _| act.log_storage_error("roster remove", r),
            ),
            StoreOp::PendingIn { contact, stanza } => self.store(
                ctx,
                move |b, d, u| b.pending_in(d, u, &contact, stanza.as_deref()),
                |act, r, _| act.log_storage_error("pending", r),
            ),
            StoreOp::OfflinePush { xml } => {
                if let Some(sig) = sig {
                    self.store_offline(xml, sig.clone(), ctx);
                }
            }
            StoreOp::OfflineDeliver { resource } => self.deliver_offline(resource, ctx),
        }
    }

    /// Hand the stored messages to `res`, then delete what its session wrote to the
    /// stream; what it could not write (it was closing, its stream was full or gone)
    /// stays stored for the next session.
    fn deliver_offline(&mut self, res: String, ctx: &mut Context<Self>) {
        self.store(ctx, move |b, d, u| b.offline_list(d, u), move |act, r, ctx| {
            let msgs = match r {
                Ok(m) => m,
                Err(e) => return slog::error!(act.log, "offline messages not loaded"; "error" => %e),
            };
            // what is stored from now on sets it again
            act.state.offline_waiting = false;
            let Some(last) = msgs.last().map(|(id, _)| *id) else { return };
            let Some(target) = act.sessions.get(&res) else {
                act.state.offline_waiting = true;
                return;
            };
            // (id, message); an unreadable one is logged and deleted with the others
            let mut ids = Vec::with_capacity(msgs.len());
            let mut messages = Vec::with_capacity(msgs.len());
            for (id, xml) in &msgs {
                match xml.parse::<Element>() {
                    Ok(el) => {
                        ids.push(*id);
                        messages.push(el);
                    }
                    Err(e) => slog::error!(act.log, "unreadable offline message dropped"; "error" => %e),
                }
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            target.do_send(ToSession::Offline(OfflineBatch { messages, written: tx }));
            // the session answers at once (or drops the sender when it is gone); the
            // account waits, so that no other flush lists the same messages meanwhile,
            // but not forever: a session behind its mailbox could itself be waiting for
            // this account. On expiry the messages stay stored (the session sees the
            // answer dropped and writes none of them).
            async move {
                tokio::time::timeout(OFFLINE_HANDOVER_TIMEOUT, rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0)
            }
                .into_actor(act)
                .map(move |written, act, ctx| {
                    let upto = if written == ids.len() { Some(last) } else { written.checked_sub(1).map(|i| ids[i]) };
                    if written < ids.len() {
                        act.state.offline_waiting = true;
                        slog::info!(act.log, "offline messages kept: the session did not take them"; "written" => written, "kept" => ids.len() - written, "to" => &res);
                    } else {
                        slog::info!(act.log, "offline messages delivered"; "count" => written, "to" => &res);
                    }
                    if let Some(upto) = upto {
                        act.store(ctx, move |b, d, u| b.offline_delete(d, u, upto), |act, r, _| act.log_storage_error("offline delete", r));
                    }
                })
                .wait(ctx);
        });
    }
}

//! Offline messages (XEP-0160): stored while nobody can take them, handed to the
//! first resource available at a non-negative priority.

use super::*;

impl Account {
    pub(super) fn inbound_message(&mut self, sig: Signal, ctx: &mut Context<Self>) {
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
                r.addr.do_send(ToSession::Signal(sig.clone()));
            }
            return;
        }
        let mut msg = sig.stanza().clone();
        if !offline::should_store(&msg) {
            return;
        }
        offline::stamp(&mut msg, &self.domain, std::time::SystemTime::now());
        let xml = xmppd_proto::xml::writer::to_string(&msg);
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
                    slog::error!(act.log, "offline message not stored"; "error" => %e);
                    act.bounce(
                        &sig,
                        ErrorCondition::InternalServerError,
                        Some("message could not be stored"),
                    );
                }
            },
        );
    }

    pub(super) fn deliver_offline(&mut self, resource: &str, ctx: &mut Context<Self>) {
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
                    Ok(el) => target.addr.do_send(ToSession::Write(el)),
                    Err(e) => slog::error!(act.log, "unreadable offline message dropped"; "error" => %e),
                }
            }
            slog::info!(act.log, "offline messages delivered"; "count" => msgs.len(), "to" => &res);
            act.store(ctx, move |b, d, u| b.offline_delete(d, u, last), |act, r, _| act.log_storage_error("offline delete", r));
        });
    }
}

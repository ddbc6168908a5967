//! What a session holds for a registry or account mailbox that is full, and the pacing
//! of its client's reads (see `docs/ARCHITECTURE.md`, back-pressure).

use super::*;

/// How long a client's signal may be held for a full registry or account mailbox
/// before it is returned to the client as resource-constraint.
pub const HOLD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What a session holds back while the actor it goes to is behind.
pub(super) enum Held {
    Registry(FromSession),
    Account(ToAccount),
}

impl Session {
    /// Deliver what waited for room, in order, from a spawned future: the session goes
    /// on meanwhile (it writes to its client and answers its account's offline
    /// hand-over, which may be what the account is busy with), but reads nothing more
    /// from the client until all is handed over (see [`Session::pace`]). What finds no
    /// room within [`HOLD_TIMEOUT`] is returned to the client as resource-constraint.
    pub(super) fn release_held(&mut self, ctx: &mut Context<Self>) {
        if self.releasing || self.held.is_empty() {
            return;
        }
        self.releasing = true;
        let held = std::mem::take(&mut self.held);
        let (registry, account) = (self.ctx.registry.from_session.clone(), self.account.clone());
        async move {
            let until = tokio::time::Instant::now() + HOLD_TIMEOUT;
            let mut expired = Vec::new();
            for mut h in held {
                let mut pause = std::time::Duration::from_millis(1);
                loop {
                    let r = match h {
                        Held::Registry(m) => registry.try_send(m).map_err(|e| match e {
                            SendError::Full(m) => Some(Held::Registry(m)),
                            SendError::Closed(m) => {
                                m.pending.fetch_sub(1, Ordering::Relaxed);
                                None
                            }
                        }),
                        Held::Account(m) => account.try_send(m).map_err(|e| match e {
                            SendError::Full(m) => Some(Held::Account(m)),
                            SendError::Closed(_) => None,
                        }),
                    };
                    match r {
                        Ok(()) | Err(None) => break,
                        Err(Some(back)) if tokio::time::Instant::now() >= until => {
                            expired.push(back);
                            break;
                        }
                        Err(Some(back)) => {
                            h = back;
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(std::time::Duration::from_millis(50));
                        }
                    }
                }
            }
            expired
        }
        .into_actor(self)
        .map(|expired, act, ctx| {
            act.releasing = false;
            for h in expired {
                act.refuse_held(h);
            }
            act.release_held(ctx);
            act.pace(ctx);
        })
        .spawn(ctx);
    }

    /// A held signal found no room in time: its sender (this session's client) learns.
    fn refuse_held(&mut self, h: Held) {
        const TEXT: Option<&str> = Some("server busy: try again later");
        slog::warn!(self.log, "a held signal found no room in time: refused");
        let el = match h {
            Held::Registry(m) => {
                m.pending.fetch_sub(1, Ordering::Relaxed);
                stanza::error_reply(m.sig.stanza(), ErrorCondition::ResourceConstraint, TEXT)
            }
            Held::Account(ToAccount::FromClient { stanza: el, .. }) => {
                stanza::error_reply(&el, ErrorCondition::ResourceConstraint, TEXT)
            }
            Held::Account(_) => None,
        };
        if !self.closing {
            self.reply(el);
        }
    }

    /// Read nothing more from the client while anything of it is held here or waits
    /// in the registry for a busy account; read again once all is handed over. Writes
    /// to the client go on meanwhile.
    pub(super) fn pace(&mut self, ctx: &mut Context<Self>) {
        if self.pacing {
            return;
        }
        if self.held.is_empty() && !self.releasing && self.backlog.is_clear() {
            self.out.resume_reads();
            return;
        }
        self.out.pause_reads();
        if self.releasing || !self.held.is_empty() {
            // release_held calls pace again when it is done
            return;
        }
        self.pacing = true;
        self.backlog
            .clone()
            .clear()
            .into_actor(self)
            .map(|(), act, ctx| {
                act.pacing = false;
                act.pace(ctx);
            })
            .spawn(ctx);
    }
}

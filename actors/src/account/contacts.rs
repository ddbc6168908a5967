//! The roster iq (RFC 6121 §2): get (with versioning), set, remove. Subscription
//! state and pushes are decided in [`xmppd_proto::im::account`].

use super::*;

impl Account {
    pub(super) fn roster_iq(&mut self, resource: &str, iq: Element, ctx: &mut Context<Self>) {
        let Some(query) = features::single_payload(&iq).cloned() else {
            return;
        };
        if iq.attr("type") == Some("get") {
            if let Some(r) = self.state.resource_mut(resource) {
                r.roster_interest = true;
            }
            // RFC 6121 §2.6: an up-to-date cached roster gets an empty result
            let s = &self.state;
            let reply = if query.attr("ver") == Some(s.ver.to_string().as_str()) {
                stanza::iq_result(&iq, None)
            } else {
                stanza::iq_result(&iq, Some(roster::query(Some(s.ver), s.roster.values())))
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
                    .state
                    .roster
                    .get(&contact)
                    .cloned()
                    .unwrap_or_else(|| Item::new(&contact));
                item.name = name;
                item.groups = groups;
                self.state.ver += 1;
                let (i, v) = (item.clone(), self.state.ver);
                let res = resource.to_string();
                self.store(
                    ctx,
                    move |b, d, u| b.roster_put(d, u, &i, v),
                    move |act, r, ctx| {
                        let reply = match r {
                            Ok(()) => {
                                let mut fx = Vec::new();
                                act.state.push(item.to_element(), &mut fx);
                                act.state.roster.insert(contact, item);
                                act.carry_out(fx, None, ctx);
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
            Ok(Change::Remove { jid }) => match self.state.remove_contact(jid.as_str()) {
                Ok(fx) => {
                    self.carry_out(fx, None, ctx);
                    self.write(resource, stanza::iq_result(&iq, None));
                }
                Err(cond) => {
                    if let Some(e) = stanza::error_reply(&iq, cond, None) {
                        self.write(resource, e);
                    }
                }
            },
        }
    }
}

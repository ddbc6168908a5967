//! The roster (RFC 6121 §2): subscription state of each contact, pushes, roster iq.

use super::*;

impl Account {
    pub(super) fn state_of(&self, contact: &str) -> State {
        let item = self.roster.get(contact);
        State {
            sub: item.map(|i| i.sub).unwrap_or_default(),
            pending_out: item.is_some_and(|i| i.ask),
            pending_in: self.pending.contains_key(contact),
        }
    }

    /// Apply a new subscription state to the roster: store and push what changed.
    pub(super) fn set_state(
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
    pub(super) fn push(&self, item: Element) {
        for (res, r) in self.resources.iter() {
            if r.roster_interest {
                r.addr.do_send(ToSession::Write(roster::push(
                    self.full(res).as_str(),
                    self.ver,
                    item.clone(),
                )));
            }
        }
    }

    pub(super) fn roster_iq(&mut self, resource: &str, iq: Element, ctx: &mut Context<Self>) {
        let Some(query) = features::single_payload(&iq).cloned() else {
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
    pub(super) fn subscription_stanza(&self, contact: &str, ty: &str) -> Element {
        let mut p = Element::bare("presence", ns::CLIENT);
        set_attr(&mut p, "from", self.bare.as_str());
        set_attr(&mut p, "to", contact);
        set_attr(&mut p, "type", ty);
        p
    }
}

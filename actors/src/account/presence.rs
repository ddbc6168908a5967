//! Presence (RFC 6121 §4): broadcast, probes answered with what is current, directed
//! presence, unavailable when a resource leaves.

use super::*;

impl Account {
    pub(super) fn available(&self) -> impl Iterator<Item = (&String, &Resource)> {
        self.resources.iter().filter(|(_, r)| r.presence.is_some())
    }

    /// The current presence of every available resource, to `to`.
    pub(super) fn send_presence_to(&self, to: &str) {
        for (res, r) in self.available() {
            if let Some(mut p) = r.presence_element() {
                set_attr(&mut p, "from", self.full(res).as_str());
                set_attr(&mut p, "to", to);
                self.route(p);
            }
        }
    }

    /// Unavailable presence from every available resource, to `to`.
    pub(super) fn send_unavailable_to(&self, to: &str) {
        for (res, _) in self.available() {
            self.route(unavailable(self.full(res).as_str(), to));
        }
    }

    pub(super) fn client_presence(
        &mut self,
        resource: &str,
        mut p: Element,
        ctx: &mut Context<Self>,
    ) {
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

    pub(super) fn broadcast_available(
        &mut self,
        resource: &str,
        p: Element,
        ctx: &mut Context<Self>,
    ) {
        let full = self.full(resource).to_string();
        let priority = p
            .get_child("priority", ns::CLIENT)
            .and_then(|e| e.text().trim().parse::<i8>().ok())
            .unwrap_or(0);
        let Some(r) = self.resources.get_mut(resource) else {
            return;
        };
        let initial = r.presence.is_none();
        r.presence = Some(xmppd_proto::xml::writer::to_string(&p).into());
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
            r.addr.do_send(ToSession::Write(q));
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

    pub(super) fn broadcast_unavailable(&mut self, resource: &str, p: Option<Element>) {
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
            let mut targets: Vec<(String, SessionRef)> = self
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
                addr.do_send(ToSession::Write(q));
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
}

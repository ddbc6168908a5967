//! Subscriptions (RFC 6121 §3): the user's requests and answers, and those of
//! contacts, applied to the roster; probes.

use super::*;

impl Account {
    pub(super) fn outbound_subscription(
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

    pub(super) fn inbound_subscription(
        &mut self,
        sig: Signal,
        kind: SubscribeKind,
        ctx: &mut Context<Self>,
    ) {
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
                .insert(contact.clone(), xmppd_proto::xml::writer::to_string(&p));
            let (c, x) = (contact.clone(), xmppd_proto::xml::writer::to_string(&p));
            self.store(
                ctx,
                move |b, d, u| b.pending_in(d, u, &c, Some(&x)),
                |act, r, _| act.log_storage_error("pending", r),
            );
        }
        self.set_state(&contact, out.state, None, ctx);
        for (_, r) in self.available() {
            r.addr.do_send(ToSession::Write(p.clone()));
        }
        if kind == SubscribeKind::Unsubscribe {
            // the contact no longer receives the user's presence
            self.send_unavailable_to(&contact);
        }
    }

    /// RFC 6121 §4.3.2: answer a probe from a contact subscribed to the user.
    pub(super) fn probe(&self, sig: Signal) {
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
}

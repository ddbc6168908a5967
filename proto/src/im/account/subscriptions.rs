//! Subscriptions (RFC 6121 §3): the user's requests and answers and those of contacts,
//! applied to the roster through the Appendix A state machine ([`roster::outbound`],
//! [`roster::inbound`]); pre-approval (§3.4) and the answers the server gives for the
//! user; removal of a roster item (§2.5), which cancels both directions.

use super::{Effect, State, StoreOp, typed_presence};
use crate::im::roster::{self, Item};
use crate::stanza::{ErrorCondition, SubscribeKind, set_attr};
use minidom::Element;
use xmpp_parsers::jid::Jid;

impl State {
    /// The Appendix A state of `contact`.
    pub fn state_of(&self, contact: &str) -> roster::State {
        let item = self.roster.get(contact);
        roster::State {
            sub: item.map(|i| i.sub).unwrap_or_default(),
            pending_out: item.is_some_and(|i| i.ask),
            pending_in: self.pending.contains_key(contact),
        }
    }

    /// Apply a new subscription state (and pre-approval, when `Some`) to the roster:
    /// store and push what changed, forget an answered request.
    pub fn set_state(
        &mut self,
        contact: &str,
        s: roster::State,
        approved: Option<bool>,
        fx: &mut Vec<Effect>,
    ) {
        let before = self.roster.get(contact);
        let mut item = before.cloned().unwrap_or_else(|| Item::new(contact));
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
        if keep && before != Some(&item) {
            self.ver += 1;
            fx.push(Effect::Store(StoreOp::RosterPut {
                item: item.clone(),
                ver: self.ver,
            }));
            let el = item.to_element();
            self.roster.insert(contact.to_string(), item);
            self.push(el, fx);
        }
        if !s.pending_in && self.pending.remove(contact).is_some() {
            fx.push(Effect::Store(StoreOp::PendingIn {
                contact: contact.to_string(),
                stanza: None,
            }));
        }
    }

    /// A subscription stanza from the user's bare JID to `contact`.
    fn subscription_stanza(&self, contact: &str, ty: &str) -> Element {
        typed_presence(self.bare.as_str(), contact, ty)
    }

    /// The user sends subscription presence `p` of `kind` to `contact` (bare).
    pub(super) fn outbound_subscription(
        &mut self,
        mut p: Element,
        contact: String,
        kind: SubscribeKind,
        fx: &mut Vec<Effect>,
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
                    self.set_state(&contact, s, Some(true), fx);
                }
                return;
            }
            SubscribeKind::Unsubscribed if !out.forward => {
                if self.roster.get(&contact).is_some_and(|i| i.approved) {
                    self.set_state(&contact, s, Some(false), fx);
                }
                return;
            }
            _ => {}
        }
        self.set_state(&contact, out.state, None, fx);
        if out.forward || matches!(kind, SubscribeKind::Subscribe | SubscribeKind::Unsubscribe) {
            fx.push(Effect::Route(p));
        }
        match kind {
            // the contact may now see the user's presence
            SubscribeKind::Subscribed if out.forward => self.presence_to(&contact, fx),
            SubscribeKind::Unsubscribed if out.forward => self.unavailable_to(&contact, fx),
            _ => {}
        }
    }

    /// Subscription presence or a probe (`p`, of `kind`) from `from` to the account.
    pub fn inbound_subscription(
        &mut self,
        from: &Jid,
        kind: SubscribeKind,
        mut p: Element,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let contact = from.to_bare().to_string();
        if self.exists != Some(true) {
            // RFC 6121 §3.1.3: no such user
            if kind == SubscribeKind::Subscribe {
                fx.push(Effect::Route(
                    self.subscription_stanza(&contact, "unsubscribed"),
                ));
            }
            return fx;
        }
        if self.is_blocked(from) {
            return fx;
        }
        if kind == SubscribeKind::Probe {
            self.probe(from, &mut fx);
            return fx;
        }
        set_attr(&mut p, "from", &contact);
        set_attr(&mut p, "to", self.bare.as_str());
        let s = self.state_of(&contact);
        if kind == SubscribeKind::Subscribe {
            let approved = self.roster.get(&contact).is_some_and(|i| i.approved);
            if s.sub.from() || approved {
                // already subscribed, or pre-approved: the server answers for the user
                if !s.sub.from() {
                    let n = roster::State {
                        sub: if s.sub.to() {
                            roster::Sub::Both
                        } else {
                            roster::Sub::From
                        },
                        pending_in: false,
                        ..s
                    };
                    self.set_state(&contact, n, Some(false), &mut fx);
                }
                fx.push(Effect::Route(
                    self.subscription_stanza(&contact, "subscribed"),
                ));
                self.presence_to(&contact, &mut fx);
                return fx;
            }
        }
        let out = roster::inbound(s, kind);
        if !out.forward {
            return fx;
        }
        if kind == SubscribeKind::Subscribe {
            let xml = crate::xml::writer::to_string(&p);
            self.pending.insert(contact.clone(), xml.clone());
            fx.push(Effect::Store(StoreOp::PendingIn {
                contact: contact.clone(),
                stanza: Some(xml),
            }));
        }
        self.set_state(&contact, out.state, None, &mut fx);
        for r in self.available() {
            fx.push(Effect::Write {
                resource: r.name.clone(),
                stanza: p.clone(),
            });
        }
        if kind == SubscribeKind::Unsubscribe {
            // the contact no longer receives the user's presence
            self.unavailable_to(&contact, &mut fx);
        }
        fx
    }

    /// RFC 6121 §2.5.2: the user removes `contact` from the roster, which cancels the
    /// subscription both ways. `Err` when there is no such item.
    pub fn remove_contact(&mut self, contact: &str) -> Result<Vec<Effect>, ErrorCondition> {
        let Some(item) = self.roster.get(contact) else {
            return Err(ErrorCondition::ItemNotFound);
        };
        let (to, ask, from) = (item.sub.to(), item.ask, item.sub.from());
        let mut fx = Vec::new();
        if to || ask {
            fx.push(Effect::Route(
                self.subscription_stanza(contact, "unsubscribe"),
            ));
        }
        if from || self.pending.contains_key(contact) {
            fx.push(Effect::Route(
                self.subscription_stanza(contact, "unsubscribed"),
            ));
        }
        if from {
            self.unavailable_to(contact, &mut fx);
        }
        self.pending.remove(contact);
        self.roster.remove(contact);
        self.ver += 1;
        fx.push(Effect::Store(StoreOp::RosterRemove {
            contact: contact.to_string(),
            ver: self.ver,
        }));
        self.push(roster::removed_item(contact), &mut fx);
        Ok(fx)
    }
}

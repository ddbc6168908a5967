//! Presence (RFC 6121 §4): broadcast of the user's presence to subscribed contacts and
//! own resources, probes at initial presence and their answers, directed presence,
//! unavailable presence when a resource leaves.

use super::{Effect, State, StoreOp, unavailable};
use crate::ns;
use crate::stanza::{self, SubscribeKind, set_attr};
use minidom::Element;
use std::collections::BTreeSet;
use xmpp_parsers::jid::Jid;

impl State {
    /// The current presence of every available resource, routed to `to`.
    pub fn presence_to(&self, to: &str, fx: &mut Vec<Effect>) {
        for r in self.available() {
            if let Some(mut p) = r.presence_element() {
                set_attr(&mut p, "from", self.full(&r.name).as_str());
                set_attr(&mut p, "to", to);
                fx.push(Effect::Route(p));
            }
        }
    }

    /// Unavailable presence from every available resource, routed to `to`.
    pub fn unavailable_to(&self, to: &str, fx: &mut Vec<Effect>) {
        for r in self.available() {
            fx.push(Effect::Route(unavailable(self.full(&r.name).as_str(), to)));
        }
    }

    /// A presence stanza from the user's `resource`: broadcast (no `to`), directed
    /// presence, or subscription management (§3). Clients do not probe (§4.3).
    pub fn client_presence(&mut self, resource: &str, mut p: Element) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Ok(to) = stanza::jid_attr(&p, "to") else {
            return fx;
        };
        let ty = p.attr("type").map(str::to_string);
        let kind = ty.as_deref().and_then(SubscribeKind::from_type);
        if kind == Some(SubscribeKind::Probe) {
            return fx; // clients do not probe (RFC 6121 §4.3)
        }
        match (to, kind) {
            (Some(to), Some(kind)) => {
                self.outbound_subscription(p, to.to_bare().to_string(), kind, &mut fx)
            }
            (Some(to), None) => {
                // directed presence: remembered when the target does not get the
                // user's presence anyway, so that it learns when the user leaves
                let target = to.to_string();
                let subscribed = self
                    .roster
                    .get(to.to_bare().as_str())
                    .is_some_and(|i| i.sub.from());
                if let Some(r) = self.resource_mut(resource) {
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
                fx.push(Effect::Route(p));
            }
            (None, None) => {
                stanza::remove_attr(&mut p, "to");
                match ty.as_deref() {
                    None => self.broadcast_available(resource, p, &mut fx),
                    Some("unavailable") => self.broadcast_unavailable(resource, Some(p), &mut fx),
                    _ => {}
                }
            }
            (None, Some(_)) => {}
        }
        fx
    }

    /// Available presence `p` from `resource` (no `to`): to the contacts subscribed to
    /// the user's presence and to every available resource of the user. The initial
    /// one also probes the contacts the user is subscribed to, shows the new resource
    /// the others' presence and the waiting subscription requests. Offline messages go
    /// to the first presence at a non-negative priority (XEP-0160).
    pub(super) fn broadcast_available(&mut self, resource: &str, p: Element, fx: &mut Vec<Effect>) {
        let full = self.full(resource).to_string();
        let priority = p
            .get_child("priority", ns::CLIENT)
            .and_then(|e| e.text().trim().parse::<i8>().ok())
            .unwrap_or(0);
        let Some(r) = self.resource_mut(resource) else {
            return;
        };
        let initial = r.presence.is_none();
        r.presence = Some(crate::xml::writer::to_string(&p).into());
        r.priority = priority;
        let offline_due = priority >= 0 && !std::mem::replace(&mut r.offline_done, true);
        // to contacts subscribed to the user's presence
        for (contact, item) in &self.roster {
            if item.sub.from() && !self.is_blocked_str(contact) {
                let mut q = p.clone();
                set_attr(&mut q, "to", contact);
                fx.push(Effect::Route(q));
            }
        }
        // to every available resource of the user, this one included (RFC 6121 §4.2.2)
        for r in self.available() {
            let mut q = p.clone();
            set_attr(&mut q, "to", self.full(&r.name).as_str());
            fx.push(Effect::Write {
                resource: r.name.clone(),
                stanza: q,
            });
        }
        if initial {
            // probe the contacts whose presence the user wants
            for (contact, item) in &self.roster {
                if item.sub.to() {
                    let mut probe = Element::bare("presence", ns::CLIENT);
                    set_attr(&mut probe, "from", &full);
                    set_attr(&mut probe, "to", contact);
                    set_attr(&mut probe, "type", "probe");
                    fx.push(Effect::Route(probe));
                }
            }
            // the other resources' presence, to the new one
            for r in self.available() {
                if r.name != resource
                    && let Some(mut q) = r.presence_element()
                {
                    set_attr(&mut q, "to", &full);
                    fx.push(Effect::Write {
                        resource: resource.to_string(),
                        stanza: q,
                    });
                }
            }
            // subscription requests that waited for the user
            for stanza in self.pending.values() {
                if let Ok(mut el) = stanza.parse::<Element>() {
                    set_attr(&mut el, "to", self.bare.as_str());
                    fx.push(Effect::Write {
                        resource: resource.to_string(),
                        stanza: el,
                    });
                }
            }
        }
        if offline_due && self.offline_waiting {
            fx.push(Effect::Store(StoreOp::OfflineDeliver {
                resource: resource.to_string(),
            }));
        }
    }

    /// `resource` becomes unavailable (`p`, or a plain unavailable presence when its
    /// session ended): to the contacts that saw it available, to the user's resources
    /// (this one included), and to whoever got directed presence from it.
    pub(super) fn broadcast_unavailable(
        &mut self,
        resource: &str,
        p: Option<Element>,
        fx: &mut Vec<Effect>,
    ) {
        let full = self.full(resource).to_string();
        let Some(r) = self.resource_mut(resource) else {
            return;
        };
        if r.presence.is_none() && r.directed.is_empty() {
            return;
        }
        let was_available = r.presence.take().is_some();
        let directed = std::mem::take(&mut r.directed);
        let p = p.unwrap_or_else(|| unavailable(&full, ""));
        let from = |to: &str| {
            let mut q = p.clone();
            set_attr(&mut q, "from", &full);
            set_attr(&mut q, "to", to);
            q
        };
        let mut sent = BTreeSet::new();
        if was_available {
            for (contact, item) in &self.roster {
                if item.sub.from() {
                    fx.push(Effect::Route(from(contact)));
                    sent.insert(contact.as_str());
                }
            }
            // the user's other available resources, and this one
            for r in self.available() {
                fx.push(Effect::Write {
                    resource: r.name.clone(),
                    stanza: from(self.full(&r.name).as_str()),
                });
            }
            fx.push(Effect::Write {
                resource: resource.to_string(),
                stanza: from(&full),
            });
        }
        for to in &directed {
            if !sent.contains(to.as_str()) {
                fx.push(Effect::Route(from(to)));
            }
        }
    }

    /// RFC 6121 §4.3.2: a probe from `from`, answered when it is subscribed to the
    /// user's presence (or is the user): the current presence, or unavailable.
    pub fn probe(&self, from: &Jid, fx: &mut Vec<Effect>) {
        let contact = from.to_bare();
        let subscribed = self
            .roster
            .get(contact.as_str())
            .is_some_and(|i| i.sub.from())
            || contact == self.bare;
        if !subscribed {
            return;
        }
        let to = from.to_string();
        if self.available().next().is_some() {
            self.presence_to(&to, fx);
        } else {
            fx.push(Effect::Route(unavailable(self.bare.as_str(), &to)));
        }
    }
}

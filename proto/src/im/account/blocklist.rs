//! Blocking (XEP-0191) applied to the account: what a block or unblock changes, who
//! stops seeing the user, and the pushes once the new list is stored.

use super::{Effect, State};
use crate::im::blocking;
use crate::ns;
use crate::stanza::set_attr;
use minidom::Element;
use xmpp_parsers::jid::Jid;

/// What a block or unblock request changed.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockChange {
    /// Carry out now (before the list is stored): unavailable presence to the newly
    /// blocked who saw the user's presence.
    pub effects: Vec<Effect>,
    /// The `<block/>` / `<unblock/>` pushed once the list is stored; `None` when the
    /// list did not change.
    pub push: Option<Element>,
}

impl State {
    /// Block `jids` (XEP-0191 §3.3): those not blocked yet are added; a newly blocked
    /// contact subscribed to the user's presence gets unavailable presence.
    pub fn block(&mut self, jids: Vec<String>) -> BlockChange {
        let new: Vec<String> = jids
            .into_iter()
            .filter(|j| !self.blocklist.contains(j))
            .collect();
        let mut effects = Vec::new();
        for j in &new {
            if let Ok(jid) = Jid::new(j) {
                let bare = jid.to_bare();
                if self.roster.get(bare.as_str()).is_some_and(|i| i.sub.from()) {
                    self.unavailable_to(j, &mut effects);
                }
            }
            self.blocklist.push(j.clone());
        }
        let push = (!new.is_empty()).then(|| blocking::element("block", &new));
        BlockChange { effects, push }
    }

    /// Unblock `jids`, or everything when empty (XEP-0191 §3.4; unblocking everything
    /// is pushed as an empty `<unblock/>`, even when the list was empty).
    pub fn unblock(&mut self, jids: Vec<String>) -> BlockChange {
        let list = &mut self.blocklist;
        let push = if jids.is_empty() {
            list.clear();
            Some(blocking::element("unblock", &[]))
        } else {
            let removed: Vec<String> = jids.iter().filter(|j| list.contains(j)).cloned().collect();
            list.retain(|b| !jids.contains(b));
            (!removed.is_empty()).then(|| blocking::element("unblock", &removed))
        };
        BlockChange {
            effects: Vec::new(),
            push,
        }
    }

    /// Once a changed list is stored: every session gets it (it filters with it), and
    /// the resources that asked for the blocklist get `push`.
    pub fn blocklist_pushes(&self, push: &Element) -> Vec<Effect> {
        let mut fx = Vec::new();
        for r in &self.resources {
            fx.push(Effect::Blocklist {
                resource: r.name.clone(),
            });
            if r.block_interest {
                let mut iq = Element::bare("iq", ns::CLIENT);
                set_attr(&mut iq, "type", "set");
                set_attr(&mut iq, "id", &format!("block{:x}", rand::random::<u32>()));
                set_attr(&mut iq, "to", self.full(&r.name).as_str());
                iq.append_child(push.clone());
                fx.push(Effect::Write {
                    resource: r.name.clone(),
                    stanza: iq,
                });
            }
        }
        fx
    }
}

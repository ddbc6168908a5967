//! An account's IM state and the decisions taken on it, as plain functions that
//! return [`Effect`]s: presence (RFC 6121 §4) in `presence.rs`, subscriptions (§3) and
//! roster removal in `subscriptions.rs`, inbound messages and offline storage (§8.5,
//! XEP-0160) in `messages.rs`, blocking (XEP-0191) in `blocklist.rs`. The account actor
//! owns one [`State`], calls these, and carries out the effects in the order given
//! (storage calls included, each run before the next signal is looked at).

mod blocklist;
mod messages;
mod presence;
mod subscriptions;

#[cfg(test)]
mod tests;

use crate::im::blocking;
use crate::im::roster::{self, Item};
use crate::ns;
use crate::stanza::{ErrorCondition, set_attr};
use minidom::Element;
use std::collections::{BTreeMap, BTreeSet};
use xmpp_parsers::jid::{BareJid, Jid};

pub use blocklist::BlockChange;

/// Something the account decided to do; carried out by the actor, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write a stanza to one of the account's own resources (ignored if it is gone).
    Write { resource: String, stanza: Element },
    /// Route a stanza (with its `from` and `to` set) to another entity.
    Route(Element),
    /// Hand the inbound signal being decided on, as it is, to one of the resources.
    Deliver { resource: String },
    /// Return the inbound signal being decided on to its sender, with an error.
    Bounce {
        condition: ErrorCondition,
        text: Option<&'static str>,
    },
    /// Give a resource's session the current blocklist (it filters with it).
    Blocklist { resource: String },
    /// A storage call, run in order with everything else the account does.
    Store(StoreOp),
}

/// The storage calls the decisions ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Store a roster item at roster version `ver`.
    RosterPut { item: Item, ver: u64 },
    /// Remove a roster item at roster version `ver`.
    RosterRemove { contact: String, ver: u64 },
    /// Keep (`Some`) or forget (`None`) a contact's subscription request.
    PendingIn {
        contact: String,
        stanza: Option<String>,
    },
    /// Store an offline message (serialised, stamped). Once stored, set
    /// [`State::offline_waiting`]; if it cannot be, bounce the inbound signal.
    OfflinePush { xml: String },
    /// Load the stored messages, write them to `resource`, clear
    /// [`State::offline_waiting`], then delete what was delivered.
    OfflineDeliver { resource: String },
}

/// One bound resource of the account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resource {
    pub name: String,
    /// The last available presence broadcast (no `to`), serialised (an element
    /// costs ten times the bytes), when available.
    pub presence: Option<Box<str>>,
    pub priority: i8,
    /// Requested the roster (gets roster pushes).
    pub roster_interest: bool,
    /// Requested the blocklist (gets blocklist pushes).
    pub block_interest: bool,
    /// Directed presence sent to entities not subscribed to the user's presence.
    pub directed: BTreeSet<String>,
    /// Offline messages were handed over (at the first non-negative presence).
    pub offline_done: bool,
}

impl Resource {
    pub fn new(name: &str) -> Resource {
        Resource {
            name: name.to_string(),
            ..Resource::default()
        }
    }

    fn presence_element(&self) -> Option<Element> {
        self.presence.as_deref().and_then(|p| p.parse().ok())
    }
}

/// What the account knows: roster, pending requests, blocklist, bound resources.
#[derive(Debug, Clone)]
pub struct State {
    pub bare: BareJid,
    /// `None` until loaded; `Some(false)` for an address with no account behind it.
    pub exists: Option<bool>,
    pub roster: BTreeMap<String, Item>,
    pub ver: u64,
    /// Contact → the subscription request stanza waiting for an answer.
    pub pending: BTreeMap<String, String>,
    pub blocklist: Vec<String>,
    /// Messages may be stored for the account: read at load, set when one is stored,
    /// cleared when they are taken for delivery. Spares a login the storage round trip
    /// when there are none.
    pub offline_waiting: bool,
    /// The bound resources: a handful at most, so a vector.
    pub resources: Vec<Resource>,
}

impl State {
    /// The state of an account not loaded yet.
    pub fn new(bare: BareJid) -> State {
        State {
            bare,
            exists: None,
            roster: BTreeMap::new(),
            ver: 0,
            pending: BTreeMap::new(),
            blocklist: Vec::new(),
            offline_waiting: true,
            resources: Vec::new(),
        }
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.name == name)
    }

    pub fn resource_mut(&mut self, name: &str) -> Option<&mut Resource> {
        self.resources.iter_mut().find(|r| r.name == name)
    }

    /// The resources that sent available presence.
    pub fn available(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter().filter(|r| r.presence.is_some())
    }

    /// The full JID of one of the account's resources.
    pub fn full(&self, resource: &str) -> Jid {
        self.bare
            .with_resource_str(resource)
            .map(Jid::from)
            .unwrap_or_else(|_| Jid::from(self.bare.clone()))
    }

    pub fn is_blocked(&self, jid: &Jid) -> bool {
        blocking::blocks(&self.blocklist, jid)
    }

    pub fn is_blocked_str(&self, jid: &str) -> bool {
        Jid::new(jid).map(|j| self.is_blocked(&j)).unwrap_or(false)
    }

    /// A session bound `resource`: it gets the blocklist, if there is one.
    pub fn attach(&mut self, resource: &str) -> Vec<Effect> {
        self.resources.retain(|r| r.name != resource);
        self.resources.push(Resource::new(resource));
        if self.blocklist.is_empty() {
            Vec::new()
        } else {
            vec![Effect::Blocklist {
                resource: resource.to_string(),
            }]
        }
    }

    /// The session of `resource` ended: unavailable presence where it was seen, and
    /// the resource is forgotten (after the effects, which still write to it).
    pub fn detach(&mut self, resource: &str) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.broadcast_unavailable(resource, None, &mut fx);
        self.resources.retain(|r| r.name != resource);
        fx
    }

    /// Roster push of `item` to every resource that asked for the roster.
    pub fn push(&self, item: Element, fx: &mut Vec<Effect>) {
        for r in self.resources.iter().filter(|r| r.roster_interest) {
            fx.push(Effect::Write {
                resource: r.name.clone(),
                stanza: roster::push(self.full(&r.name).as_str(), self.ver, item.clone()),
            });
        }
    }
}

/// Unavailable presence `from` → `to` (no `to` when empty).
pub fn unavailable(from: &str, to: &str) -> Element {
    let mut p = Element::bare("presence", ns::CLIENT);
    set_attr(&mut p, "from", from);
    if !to.is_empty() {
        set_attr(&mut p, "to", to);
    }
    set_attr(&mut p, "type", "unavailable");
    p
}

/// A presence stanza of type `ty` from `from` to `to`.
fn typed_presence(from: &str, to: &str, ty: &str) -> Element {
    let mut p = Element::bare("presence", ns::CLIENT);
    set_attr(&mut p, "from", from);
    set_attr(&mut p, "to", to);
    set_attr(&mut p, "type", ty);
    p
}

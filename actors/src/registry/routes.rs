//! The session routing table, and its per-arbiter replicas.
//!
//! The registry owns the authoritative table. Every change is also sent to a
//! [`Replica`] actor on each worker arbiter, which applies it to that thread's copy, so
//! that a session can resolve the common cases (a message or iq to a full JID, a chat
//! message to a bare JID with available resources) without a trip through the
//! registry. A replica may lag the registry by a message or two: a miss, or a session
//! that turns out to be gone, falls back to the registry, which decides.

use crate::signals::SessionRef;
use actix::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use xmpp_parsers::jid::{BareJid, FullJid};
use xmppd_proto::im::routing;

/// One bound resource.
#[derive(Clone)]
pub struct Route {
    pub resource: String,
    pub addr: SessionRef,
    pub available: bool,
    pub priority: i8,
}

/// Bound resources by bare JID (keyed by its string, so that a full JID's bare part
/// can be looked up without building a `BareJid`).
#[derive(Default)]
pub struct RouteTable {
    map: HashMap<String, Vec<Route>>,
}

/// The bare part of a full JID, as a slice of it (a resource may contain `/`, the
/// node and domain may not).
fn bare_of(full: &FullJid) -> &str {
    full.as_str()
        .split_once('/')
        .map_or(full.as_str(), |(b, _)| b)
}

/// A change to the table, as applied by the registry and sent to the replicas.
#[derive(Clone, actix::Message)]
#[rtype(result = "()")]
pub enum RouteUpdate {
    Add(BareJid, Route),
    Remove(BareJid, SessionRef),
    Availability(FullJid, bool, i8),
}

impl RouteTable {
    pub fn apply(&mut self, u: RouteUpdate) {
        match u {
            RouteUpdate::Add(bare, r) => {
                // most accounts have one session: no room for more until needed
                let v = self
                    .map
                    .entry(bare.into_inner())
                    .or_insert_with(|| Vec::with_capacity(1));
                v.push(r);
            }
            RouteUpdate::Remove(bare, addr) => {
                if let Some(v) = self.map.get_mut(bare.as_str()) {
                    v.retain(|r| r.addr != addr);
                    if v.is_empty() {
                        self.map.remove(bare.as_str());
                    }
                }
            }
            RouteUpdate::Availability(full, available, priority) => {
                if let Some(r) = self.map.get_mut(bare_of(&full)).and_then(|v| {
                    v.iter_mut()
                        .find(|r| r.resource == full.resource().as_str())
                }) {
                    r.available = available;
                    r.priority = priority;
                }
            }
        }
    }

    pub fn entries(&self, bare: &BareJid) -> &[Route] {
        self.map
            .get(bare.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn entries_mut(&mut self, bare: &BareJid) -> Option<&mut Vec<Route>> {
        self.map.get_mut(bare.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<Route>)> {
        self.map.iter()
    }

    pub fn lookup(&self, full: &FullJid) -> Option<SessionRef> {
        self.map
            .get(bare_of(full))?
            .iter()
            .find(|r| r.resource == full.resource().as_str())
            .map(|r| r.addr.clone())
    }

    pub fn len(&self) -> usize {
        self.map.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// RFC 6121 §8.5.2.1.1 (decided by [`routing::select`]): who gets a message of type
    /// `ty` sent to `bare`.
    pub fn message_targets(&self, bare: &BareJid, ty: Option<&str>) -> Vec<SessionRef> {
        let routes = self.entries(bare);
        let s = select(routes, ty);
        routes
            .iter()
            .filter(|r| s.takes(r.available, r.priority))
            .map(|r| r.addr.clone())
            .collect()
    }

    /// The one session that gets a message of type `ty` sent to `bare`, when exactly one
    /// does (the direct path; anything else is the registry's to decide). Allocates
    /// nothing.
    pub fn single_message_target(&self, bare: &BareJid, ty: Option<&str>) -> Option<SessionRef> {
        let routes = self.entries(bare);
        let s = select(routes, ty);
        let mut takers = routes.iter().filter(|r| s.takes(r.available, r.priority));
        match (takers.next(), takers.next()) {
            (Some(r), None) => Some(r.addr.clone()),
            _ => None,
        }
    }

    /// Every available resource of `bare` (presence to a bare JID).
    pub fn available(&self, bare: &BareJid) -> Vec<SessionRef> {
        self.entries(bare)
            .iter()
            .filter(|r| r.available)
            .map(|r| r.addr.clone())
            .collect()
    }
}

/// [`routing::select`] over a bare JID's routes.
fn select(routes: &[Route], ty: Option<&str>) -> routing::Selection {
    routing::select(routes.iter().map(|r| (r.available, r.priority)), ty)
}

thread_local! {
    static REPLICA: RefCell<RouteTable> = RefCell::new(RouteTable::default());
}

/// Read this thread's replica.
pub fn with_replica<R>(f: impl FnOnce(&RouteTable) -> R) -> R {
    REPLICA.with(|r| f(&r.borrow()))
}

/// Keeps the replica of the arbiter it runs on current.
pub struct Replica;

impl Actor for Replica {
    type Context = Context<Self>;
}

impl Handler<RouteUpdate> for Replica {
    type Result = ();
    fn handle(&mut self, u: RouteUpdate, _: &mut Context<Self>) {
        REPLICA.with(|r| r.borrow_mut().apply(u));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_part_of_a_full_jid() {
        let f = FullJid::new("a@b.example/res/with/slashes").expect("jid");
        assert_eq!(bare_of(&f), "a@b.example");
        let f = FullJid::new("b.example/r").expect("jid");
        assert_eq!(bare_of(&f), "b.example");
    }
}

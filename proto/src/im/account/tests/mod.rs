//! Unit tests of the account decisions, without a runtime: a [`State`] is set up, a
//! decision is taken, and the effects it returns are read back as short summaries.

mod blocklist;
mod messages;
mod presence;
mod subscriptions;

use super::{Effect, State, StoreOp};
use crate::im::roster::{Item, Sub};
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

/// The user, alice@a.test, loaded, with nothing stored offline.
fn alice() -> State {
    let mut s = State::new(BareJid::new("alice@a.test").expect("jid"));
    s.exists = Some(true);
    s.offline_waiting = false;
    s
}

/// Add `jid` to the roster with subscription `sub`.
fn contact(s: &mut State, jid: &str, sub: Sub) {
    let mut i = Item::new(jid);
    i.sub = sub;
    s.roster.insert(jid.to_string(), i);
}

fn el(xml: &str) -> Element {
    xml.parse().expect("xml")
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("jid")
}

/// A client presence (the namespace added).
fn presence(attrs: &str, body: &str) -> Element {
    el(&format!(
        "<presence xmlns='jabber:client' {attrs}>{body}</presence>"
    ))
}

/// The user's `resource` sends a presence (stamped with its full JID, as the session
/// does).
fn send(s: &mut State, resource: &str, (attrs, body): (&str, &str)) -> Vec<Effect> {
    let p = presence(&format!("from='alice@a.test/{resource}' {attrs}"), body);
    s.client_presence(resource, p)
}

/// Attach `resource` and make it available at `priority`; the effects are dropped.
fn online(s: &mut State, resource: &str, priority: i8) {
    s.attach(resource);
    send(
        s,
        resource,
        ("", &format!("<priority>{priority}</priority>")),
    );
}

/// `to (type)` of a stanza: what a summary shows of it.
fn short(e: &Element) -> String {
    let to = e.attr("to").unwrap_or("-");
    match e.attr("type") {
        Some(t) => format!("{to} ({t})"),
        None => to.to_string(),
    }
}

/// Every routed stanza, as `name from→to (type)`.
fn routed(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Route(el) => Some(format!(
                "{} {}→{}",
                el.name(),
                el.attr("from").unwrap_or("-"),
                short(el)
            )),
            _ => None,
        })
        .collect()
}

/// Every write to a resource, as `resource: name to (type)`.
fn written(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Write { resource, stanza } => {
                Some(format!("{resource}: {} {}", stanza.name(), short(stanza)))
            }
            _ => None,
        })
        .collect()
}

/// Every storage call.
fn stored(fx: &[Effect]) -> Vec<&StoreOp> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Store(op) => Some(op),
            _ => None,
        })
        .collect()
}

/// The roster pushes written: `resource: jid subscription ask approved`.
fn pushes(fx: &[Effect]) -> Vec<String> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Write { resource, stanza } if stanza.name() == "iq" => {
                let item = stanza.children().next()?.children().next()?;
                Some(format!(
                    "{resource}: {} {} ask={} approved={}",
                    item.attr("jid").unwrap_or("-"),
                    item.attr("subscription").unwrap_or("-"),
                    item.attr("ask").unwrap_or("-"),
                    item.attr("approved").unwrap_or("-"),
                ))
            }
            _ => None,
        })
        .collect()
}

//! The room's rules, driven with raw stanzas and read back from the effects.

mod admin;
mod enter;
mod messages;

use super::room::Room;
pub use super::{Effect, Limits};
use crate::xml::writer::to_string;
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

pub const ROOM: &str = "lounge@conference.example.org";

pub fn jid(s: &str) -> Jid {
    Jid::new(s).expect("jid")
}

pub struct T {
    pub room: Room,
    pub now: u64,
}

impl T {
    pub fn new() -> T {
        T::with(Limits::default())
    }

    pub fn with(limits: Limits) -> T {
        T {
            room: Room::new(BareJid::new(ROOM).expect("jid"), limits),
            now: 1_700_000_000_000,
        }
    }

    /// `xml` (in jabber:client) from `from` to `to` (a nick, or "" for the room).
    pub fn send(&mut self, from: &str, to: &str, xml: &str) -> Vec<Effect> {
        let to = if to.is_empty() {
            ROOM.to_string()
        } else {
            format!("{ROOM}/{to}")
        };
        let mut el: Element = xml
            .replacen('>', " xmlns='jabber:client'>", 1)
            .replacen("/ xmlns='jabber:client'>", " xmlns='jabber:client'/>", 1)
            .parse()
            .expect("xml");
        crate::stanza::set_attr(&mut el, "from", from);
        crate::stanza::set_attr(&mut el, "to", &to);
        self.now += 1000;
        self.room.handle(&jid(from), &jid(&to), &el, self.now)
    }

    /// Enter with the MUC protocol element.
    pub fn enter(&mut self, from: &str, nick: &str) -> Vec<Effect> {
        self.send(
            from,
            nick,
            "<presence><x xmlns='http://jabber.org/protocol/muc'/></presence>",
        )
    }

    /// A room created by alice@example.org/a as "alice" and made instant.
    pub fn instant() -> T {
        let mut t = T::new();
        t.enter("alice@example.org/a", "alice");
        let r = t.send(
            "alice@example.org/a",
            "",
            "<iq type='set' id='c1'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>",
        );
        assert!(all(&r).iter().any(|s| s.contains("type='result'")), "{r:?}");
        t
    }

    /// Submit configuration fields as the owner alice.
    pub fn configure(&mut self, fields: &[(&str, &str)]) -> Vec<Effect> {
        let f: String = fields
            .iter()
            .map(|(k, v)| format!("<field var='{k}'><value>{v}</value></field>"))
            .collect();
        self.send(
            "alice@example.org/a",
            "",
            &format!("<iq type='set' id='cfg'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>{f}</x></query></iq>"),
        )
    }
}

/// Every stanza the effects send or fan out, serialised, with `to` for fan-outs.
pub fn all(out: &[Effect]) -> Vec<String> {
    let mut v = Vec::new();
    for e in out {
        match e {
            Effect::Send(el) => v.push(to_string(el)),
            Effect::Fanout { stanza, to } => {
                for j in to {
                    let mut el = stanza.clone();
                    crate::stanza::set_attr(&mut el, "to", j.as_str());
                    v.push(to_string(&el));
                }
            }
            _ => {}
        }
    }
    v
}

/// What `to` is sent, in order.
pub fn to(out: &[Effect], to: &str) -> Vec<String> {
    let needle = format!("to='{to}'");
    all(out)
        .into_iter()
        .filter(|s| s.contains(&needle))
        .collect()
}

/// The one error the effects send, as its condition name.
pub fn err(out: &[Effect]) -> String {
    let v = all(out);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("type='error'"), "{v:?}");
    for c in [
        "bad-request",
        "conflict",
        "forbidden",
        "item-not-found",
        "jid-malformed",
        "not-acceptable",
        "not-allowed",
        "not-authorized",
        "registration-required",
        "resource-constraint",
        "service-unavailable",
    ] {
        if v[0].contains(&format!("<{c} ")) {
            return c.to_string();
        }
    }
    panic!("no known condition: {}", v[0])
}

//! Rosters and presence subscriptions (RFC 6121 §2, §3 and the state tables of its
//! Appendix A), as plain data and functions.

use crate::ns;
use crate::stanza::SubscribeKind;
use crate::stanza::{ErrorCondition, set_attr};
use minidom::Element;
use xmpp_parsers::jid::BareJid;

pub const NS_ROSTER: &str = "jabber:iq:roster";

/// The `subscription` attribute of a roster item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sub {
    #[default]
    None,
    To,
    From,
    Both,
}

impl Sub {
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::None => "none",
            Sub::To => "to",
            Sub::From => "from",
            Sub::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Sub> {
        Some(match s {
            "none" => Sub::None,
            "to" => Sub::To,
            "from" => Sub::From,
            "both" => Sub::Both,
            _ => return None,
        })
    }

    /// The user receives the contact's presence.
    pub fn to(self) -> bool {
        matches!(self, Sub::To | Sub::Both)
    }

    /// The contact receives the user's presence.
    pub fn from(self) -> bool {
        matches!(self, Sub::From | Sub::Both)
    }

    fn with(to: bool, from: bool) -> Sub {
        match (to, from) {
            (false, false) => Sub::None,
            (true, false) => Sub::To,
            (false, true) => Sub::From,
            (true, true) => Sub::Both,
        }
    }
}

/// One contact in a roster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    pub jid: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub sub: Sub,
    /// Pending out: the user asked to subscribe (`ask='subscribe'`).
    pub ask: bool,
    /// Pre-approved: a subscription request will be accepted automatically.
    pub approved: bool,
}

impl Item {
    pub fn new(jid: &str) -> Item {
        Item {
            jid: jid.to_string(),
            ..Default::default()
        }
    }

    /// The `<item/>` element as pushed and returned to clients.
    pub fn to_element(&self) -> Element {
        let mut e = Element::bare("item", NS_ROSTER);
        set_attr(&mut e, "jid", &self.jid);
        if let Some(n) = &self.name {
            set_attr(&mut e, "name", n);
        }
        set_attr(&mut e, "subscription", self.sub.as_str());
        if self.ask {
            set_attr(&mut e, "ask", "subscribe");
        }
        if self.approved {
            set_attr(&mut e, "approved", "true");
        }
        for g in &self.groups {
            let mut ge = Element::bare("group", NS_ROSTER);
            ge.append_text(g.as_str());
            e.append_child(ge);
        }
        e
    }
}

/// The subscription state of one contact, as in RFC 6121 Appendix A.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    pub sub: Sub,
    pub pending_out: bool,
    pub pending_in: bool,
}

/// What processing a subscription stanza decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub state: State,
    /// Outbound: route the stanza to the contact. Inbound: deliver it to the user.
    pub forward: bool,
}

impl State {
    pub fn new(sub: Sub, pending_out: bool, pending_in: bool) -> State {
        State {
            sub,
            pending_out,
            pending_in,
        }
    }

    fn changed(self, to: State) -> Outcome {
        Outcome {
            state: to,
            forward: to != self,
        }
    }
}

/// RFC 6121 A.2: the user sends a subscription stanza to a contact.
pub fn outbound(s: State, kind: SubscribeKind) -> Outcome {
    let (to, from) = (s.sub.to(), s.sub.from());
    match kind {
        // A.2.1: always routed; pending out unless already subscribed to the contact
        SubscribeKind::Subscribe => {
            let n = if to {
                s
            } else {
                State {
                    pending_out: true,
                    ..s
                }
            };
            Outcome {
                state: n,
                forward: true,
            }
        }
        // A.2.2: always routed; ends the subscription to the contact and any request
        SubscribeKind::Unsubscribe => Outcome {
            state: State {
                sub: Sub::with(false, from),
                pending_out: false,
                ..s
            },
            forward: true,
        },
        // A.2.3: approves a pending request; otherwise nothing is routed (pre-approval)
        SubscribeKind::Subscribed => {
            if s.pending_in && !from {
                s.changed(State {
                    sub: Sub::with(to, true),
                    pending_in: false,
                    ..s
                })
            } else {
                Outcome {
                    state: s,
                    forward: false,
                }
            }
        }
        // A.2.4: denies a request or cancels the contact's subscription
        SubscribeKind::Unsubscribed => {
            if s.pending_in || from {
                s.changed(State {
                    sub: Sub::with(to, false),
                    pending_in: false,
                    ..s
                })
            } else {
                Outcome {
                    state: s,
                    forward: false,
                }
            }
        }
        SubscribeKind::Probe => Outcome {
            state: s,
            forward: true,
        },
    }
}

/// RFC 6121 A.3: a subscription stanza from a contact arrives for the user.
pub fn inbound(s: State, kind: SubscribeKind) -> Outcome {
    let (to, from) = (s.sub.to(), s.sub.from());
    match kind {
        // A.3.1: a new request is delivered once; an existing subscription is answered
        // by the server (the caller auto-replies `subscribed`)
        SubscribeKind::Subscribe => {
            if from || s.pending_in {
                Outcome {
                    state: s,
                    forward: false,
                }
            } else {
                s.changed(State {
                    pending_in: true,
                    ..s
                })
            }
        }
        // A.3.2
        SubscribeKind::Unsubscribe => {
            if from || s.pending_in {
                s.changed(State {
                    sub: Sub::with(to, false),
                    pending_in: false,
                    ..s
                })
            } else {
                Outcome {
                    state: s,
                    forward: false,
                }
            }
        }
        // A.3.3: only an outstanding request can be approved
        SubscribeKind::Subscribed => {
            if s.pending_out && !to {
                s.changed(State {
                    sub: Sub::with(true, from),
                    pending_out: false,
                    ..s
                })
            } else {
                Outcome {
                    state: s,
                    forward: false,
                }
            }
        }
        // A.3.4
        SubscribeKind::Unsubscribed => {
            if s.pending_out || to {
                s.changed(State {
                    sub: Sub::with(false, from),
                    pending_out: false,
                    ..s
                })
            } else {
                Outcome {
                    state: s,
                    forward: false,
                }
            }
        }
        SubscribeKind::Probe => Outcome {
            state: s,
            forward: false,
        },
    }
}

/// A parsed roster `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Update {
        jid: BareJid,
        name: Option<String>,
        groups: Vec<String>,
    },
    Remove {
        jid: BareJid,
    },
}

/// Longest item name and group name accepted.
pub const MAX_TEXT: usize = 1024;

/// Validate a roster set query (RFC 6121 §2.3.3).
pub fn parse_set(query: &Element) -> Result<Change, (ErrorCondition, &'static str)> {
    let mut items = query.children().filter(|c| c.is("item", NS_ROSTER));
    let item = items
        .next()
        .ok_or((ErrorCondition::BadRequest, "a roster set carries one item"))?;
    if items.next().is_some() || query.children().any(|c| !c.is("item", NS_ROSTER)) {
        return Err((
            ErrorCondition::BadRequest,
            "a roster set carries exactly one item",
        ));
    }
    let jid = item
        .attr("jid")
        .ok_or((ErrorCondition::BadRequest, "item without jid"))?;
    let jid = BareJid::new(jid).map_err(|_| (ErrorCondition::JidMalformed, "invalid jid"))?;
    match item.attr("subscription") {
        Some("remove") => return Ok(Change::Remove { jid }),
        None | Some("none") | Some("to") | Some("from") | Some("both") => {}
        Some(_) => return Err((ErrorCondition::BadRequest, "invalid subscription")),
    }
    let name = item.attr("name").map(str::to_string);
    if name.as_ref().is_some_and(|n| n.len() > MAX_TEXT) {
        return Err((ErrorCondition::NotAcceptable, "name too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for g in item.children() {
        if !g.is("group", NS_ROSTER) {
            continue;
        }
        let t = g.text();
        if t.is_empty() {
            return Err((ErrorCondition::NotAcceptable, "empty group name"));
        }
        if t.len() > MAX_TEXT {
            return Err((ErrorCondition::NotAcceptable, "group name too long"));
        }
        if groups.contains(&t) {
            return Err((ErrorCondition::BadRequest, "duplicate group"));
        }
        groups.push(t);
    }
    Ok(Change::Update { jid, name, groups })
}

/// `<query xmlns='jabber:iq:roster' ver='..'>` with the given items.
pub fn query<'a>(ver: Option<u64>, items: impl IntoIterator<Item = &'a Item>) -> Element {
    let mut q = Element::bare("query", NS_ROSTER);
    if let Some(v) = ver {
        set_attr(&mut q, "ver", &v.to_string());
    }
    for i in items {
        q.append_child(i.to_element());
    }
    q
}

/// A roster push for one item (RFC 6121 §2.1.6).
pub fn push(to: &str, ver: u64, item: Element) -> Element {
    let mut q = Element::bare("query", NS_ROSTER);
    set_attr(&mut q, "ver", &ver.to_string());
    q.append_child(item);
    let mut iq = Element::bare("iq", ns::CLIENT);
    set_attr(&mut iq, "type", "set");
    set_attr(&mut iq, "id", &format!("push{:x}", rand::random::<u32>()));
    set_attr(&mut iq, "to", to);
    iq.append_child(q);
    iq
}

/// The `<item subscription='remove'/>` pushed after a removal.
pub fn removed_item(jid: &str) -> Element {
    let mut e = Element::bare("item", NS_ROSTER);
    set_attr(&mut e, "jid", jid);
    set_attr(&mut e, "subscription", "remove");
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use SubscribeKind::*;

    /// The nine states of RFC 6121 Appendix A, in its order.
    fn st(name: &str) -> State {
        match name {
            "None" => State::new(Sub::None, false, false),
            "None+PO" => State::new(Sub::None, true, false),
            "None+PI" => State::new(Sub::None, false, true),
            "None+PO+PI" => State::new(Sub::None, true, true),
            "To" => State::new(Sub::To, false, false),
            "To+PI" => State::new(Sub::To, false, true),
            "From" => State::new(Sub::From, false, false),
            "From+PO" => State::new(Sub::From, true, false),
            "Both" => State::new(Sub::Both, false, false),
            other => panic!("no state {other}"),
        }
    }

    fn check(
        table: &[(&str, bool, &str)],
        f: fn(State, SubscribeKind) -> Outcome,
        kind: SubscribeKind,
    ) {
        for (from, forward, to) in table {
            let out = f(st(from), kind);
            assert_eq!(out.state, st(to), "{kind:?} in state {from}: new state");
            assert_eq!(out.forward, *forward, "{kind:?} in state {from}: forward");
        }
    }

    #[test]
    fn a_2_1_outbound_subscribe() {
        check(
            &[
                ("None", true, "None+PO"),
                ("None+PO", true, "None+PO"),
                ("None+PI", true, "None+PO+PI"),
                ("None+PO+PI", true, "None+PO+PI"),
                ("To", true, "To"),
                ("To+PI", true, "To+PI"),
                ("From", true, "From+PO"),
                ("From+PO", true, "From+PO"),
                ("Both", true, "Both"),
            ],
            outbound,
            Subscribe,
        );
    }

    #[test]
    fn a_2_2_outbound_unsubscribe() {
        check(
            &[
                ("None", true, "None"),
                ("None+PO", true, "None"),
                ("None+PI", true, "None+PI"),
                ("None+PO+PI", true, "None+PI"),
                ("To", true, "None"),
                ("To+PI", true, "None+PI"),
                ("From", true, "From"),
                ("From+PO", true, "From"),
                ("Both", true, "From"),
            ],
            outbound,
            Unsubscribe,
        );
    }

    #[test]
    fn a_2_3_outbound_subscribed() {
        check(
            &[
                ("None", false, "None"),
                ("None+PO", false, "None+PO"),
                ("None+PI", true, "From"),
                ("None+PO+PI", true, "From+PO"),
                ("To", false, "To"),
                ("To+PI", true, "Both"),
                ("From", false, "From"),
                ("From+PO", false, "From+PO"),
                ("Both", false, "Both"),
            ],
            outbound,
            Subscribed,
        );
    }

    #[test]
    fn a_2_4_outbound_unsubscribed() {
        check(
            &[
                ("None", false, "None"),
                ("None+PO", false, "None+PO"),
                ("None+PI", true, "None"),
                ("None+PO+PI", true, "None+PO"),
                ("To", false, "To"),
                ("To+PI", true, "To"),
                ("From", true, "None"),
                ("From+PO", true, "None+PO"),
                ("Both", true, "To"),
            ],
            outbound,
            Unsubscribed,
        );
    }

    #[test]
    fn a_3_1_inbound_subscribe() {
        check(
            &[
                ("None", true, "None+PI"),
                ("None+PO", true, "None+PO+PI"),
                ("None+PI", false, "None+PI"),
                ("None+PO+PI", false, "None+PO+PI"),
                ("To", true, "To+PI"),
                ("To+PI", false, "To+PI"),
                ("From", false, "From"),
                ("From+PO", false, "From+PO"),
                ("Both", false, "Both"),
            ],
            inbound,
            Subscribe,
        );
    }

    #[test]
    fn a_3_2_inbound_unsubscribe() {
        check(
            &[
                ("None", false, "None"),
                ("None+PO", false, "None+PO"),
                ("None+PI", true, "None"),
                ("None+PO+PI", true, "None+PO"),
                ("To", false, "To"),
                ("To+PI", true, "To"),
                ("From", true, "None"),
                ("From+PO", true, "None+PO"),
                ("Both", true, "To"),
            ],
            inbound,
            Unsubscribe,
        );
    }

    #[test]
    fn a_3_3_inbound_subscribed() {
        check(
            &[
                ("None", false, "None"),
                ("None+PO", true, "To"),
                ("None+PI", false, "None+PI"),
                ("None+PO+PI", true, "To+PI"),
                ("To", false, "To"),
                ("To+PI", false, "To+PI"),
                ("From", false, "From"),
                ("From+PO", true, "Both"),
                ("Both", false, "Both"),
            ],
            inbound,
            Subscribed,
        );
    }

    #[test]
    fn a_3_4_inbound_unsubscribed() {
        check(
            &[
                ("None", false, "None"),
                ("None+PO", true, "None"),
                ("None+PI", false, "None+PI"),
                ("None+PO+PI", true, "None+PI"),
                ("To", true, "None"),
                ("To+PI", true, "None+PI"),
                ("From", false, "From"),
                ("From+PO", true, "From"),
                ("Both", true, "From"),
            ],
            inbound,
            Unsubscribed,
        );
    }

    fn q(s: &str) -> Element {
        s.parse().expect("xml")
    }

    #[test]
    fn roster_set_validation() {
        let ok = q(
            "<query xmlns='jabber:iq:roster'><item jid='b@x' name='B'><group>G</group></item></query>",
        );
        assert!(matches!(
            parse_set(&ok),
            Ok(Change::Update { name: Some(_), .. })
        ));
        let two = q("<query xmlns='jabber:iq:roster'><item jid='b@x'/><item jid='c@x'/></query>");
        assert_eq!(
            parse_set(&two).err().map(|e| e.0),
            Some(ErrorCondition::BadRequest)
        );
        let dup = q(
            "<query xmlns='jabber:iq:roster'><item jid='b@x'><group>G</group><group>G</group></item></query>",
        );
        assert_eq!(
            parse_set(&dup).err().map(|e| e.0),
            Some(ErrorCondition::BadRequest)
        );
        let empty =
            q("<query xmlns='jabber:iq:roster'><item jid='b@x'><group></group></item></query>");
        assert_eq!(
            parse_set(&empty).err().map(|e| e.0),
            Some(ErrorCondition::NotAcceptable)
        );
        let bad = q("<query xmlns='jabber:iq:roster'><item jid='b@@x'/></query>");
        assert_eq!(
            parse_set(&bad).err().map(|e| e.0),
            Some(ErrorCondition::JidMalformed)
        );
        let sub =
            q("<query xmlns='jabber:iq:roster'><item jid='b@x' subscription='both'/></query>");
        assert!(
            parse_set(&sub).is_ok(),
            "subscription other than remove is ignored, not an error"
        );
        let rm =
            q("<query xmlns='jabber:iq:roster'><item jid='b@x' subscription='remove'/></query>");
        assert!(matches!(parse_set(&rm), Ok(Change::Remove { .. })));
        let ask = q(
            "<query xmlns='jabber:iq:roster'><item jid='b@x' ask='subscribe' approved='true'/></query>",
        );
        assert!(
            parse_set(&ask).is_ok(),
            "ask and approved from a client are ignored"
        );
    }
}

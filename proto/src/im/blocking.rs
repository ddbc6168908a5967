//! XEP-0191 blocking command: the list, its requests and matching.

use crate::ns;
use crate::stanza::{ErrorCondition, set_attr};
use minidom::Element;
use xmpp_parsers::jid::Jid;

pub const NS: &str = "urn:xmpp:blocking";
pub const NS_ERRORS: &str = "urn:xmpp:blocking:errors";

/// A block or unblock request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Get,
    Block(Vec<String>),
    /// Empty: unblock everything.
    Unblock(Vec<String>),
}

/// Parse the payload of a blocking iq.
pub fn parse(payload: &Element, ty: &str) -> Result<Request, ErrorCondition> {
    match (ty, payload.name()) {
        ("get", "blocklist") => Ok(Request::Get),
        ("set", "block") => {
            let jids = items(payload)?;
            if jids.is_empty() {
                return Err(ErrorCondition::BadRequest);
            }
            Ok(Request::Block(jids))
        }
        ("set", "unblock") => Ok(Request::Unblock(items(payload)?)),
        _ => Err(ErrorCondition::BadRequest),
    }
}

fn items(payload: &Element) -> Result<Vec<String>, ErrorCondition> {
    let mut v = Vec::new();
    for i in payload.children().filter(|c| c.is("item", NS)) {
        let j = i.attr("jid").ok_or(ErrorCondition::BadRequest)?;
        let jid = Jid::new(j).map_err(|_| ErrorCondition::JidMalformed)?;
        let s = jid.to_string();
        if !v.contains(&s) {
            v.push(s);
        }
    }
    Ok(v)
}

/// `<blocklist/>`, `<block/>` or `<unblock/>` with items.
pub fn element(name: &str, jids: &[String]) -> Element {
    let mut e = Element::bare(name, NS);
    for j in jids {
        let mut i = Element::bare("item", NS);
        set_attr(&mut i, "jid", j);
        e.append_child(i);
    }
    e
}

/// Does a blocklist entry cover `jid` (XEP-0191 §3.3, XEP-0016 matching order:
/// full JID, bare JID, domain/resource, domain)?
pub fn blocks(list: &[String], jid: &Jid) -> bool {
    if list.is_empty() {
        return false;
    }
    let domain = jid.domain().as_str();
    list.iter().any(|b| {
        b == jid.as_str()
            || b == jid.to_bare().as_str()
            || b == domain
            || jid.resource().is_some_and(|r| {
                b.strip_prefix(domain).and_then(|x| x.strip_prefix('/')) == Some(r.as_str())
            })
    })
}

/// The error for a stanza the user sent to someone they block.
pub fn blocked_error() -> Element {
    let mut e = crate::stanza::error_element(ErrorCondition::NotAcceptable, None, None);
    e.append_child(Element::bare("blocked", NS_ERRORS));
    e
}

/// Is this iq payload a blocking command?
pub fn is_blocking(payload: &Element) -> bool {
    payload.has_ns(NS) && !payload.has_ns(ns::CLIENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let list = vec![
            "evil.example".to_string(),
            "bob@a.test".to_string(),
            "c@a.test/phone".to_string(),
        ];
        let j = |s: &str| Jid::new(s).expect("jid");
        assert!(blocks(&list, &j("anyone@evil.example/x")));
        assert!(blocks(&list, &j("bob@a.test/laptop")));
        assert!(blocks(&list, &j("c@a.test/phone")));
        assert!(!blocks(&list, &j("c@a.test/laptop")));
        assert!(!blocks(&list, &j("alice@a.test")));
    }

    #[test]
    fn parse_requests() {
        let el: Element =
            "<block xmlns='urn:xmpp:blocking'><item jid='x@y'/><item jid='x@y'/></block>"
                .parse()
                .expect("xml");
        assert_eq!(parse(&el, "set"), Ok(Request::Block(vec!["x@y".into()])));
        let empty: Element = "<block xmlns='urn:xmpp:blocking'/>".parse().expect("xml");
        assert_eq!(parse(&empty, "set"), Err(ErrorCondition::BadRequest));
        let all: Element = "<unblock xmlns='urn:xmpp:blocking'/>".parse().expect("xml");
        assert_eq!(parse(&all, "set"), Ok(Request::Unblock(vec![])));
        let bad: Element = "<block xmlns='urn:xmpp:blocking'><item jid='a@@b'/></block>"
            .parse()
            .expect("xml");
        assert_eq!(parse(&bad, "set"), Err(ErrorCondition::JidMalformed));
    }
}

//! iq stanzas addressed to the server, or to an account's bare JID, that the server
//! answers itself (RFC 6120 §10.3.3, RFC 6121 §8.5.1).

use minidom::Element;
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition};
use xmppd_proto::xep::disco;

/// Who an iq is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressee {
    Server,
    Account,
}

/// Answer an iq `get`/`set` (results and errors get no answer: `None`).
pub fn handle(iq: &Element, to: Addressee) -> Option<Element> {
    let ty = iq.attr("type");
    if !matches!(ty, Some("get") | Some("set")) {
        return None;
    }
    let Some(payload) = single_payload(iq) else {
        return stanza::error_reply(
            iq,
            ErrorCondition::BadRequest,
            Some("an iq get or set carries exactly one child"),
        );
    };
    let get = ty == Some("get");
    let res = match (to, payload.ns().as_str(), payload.name(), get) {
        (Addressee::Server, ns::DISCO_INFO, "query", true) => disco::server_info(payload).map(Some),
        (Addressee::Server, ns::DISCO_ITEMS, "query", true) => {
            disco::server_items(payload).map(Some)
        }
        (Addressee::Account, ns::DISCO_INFO, "query", true) => {
            disco::account_info(payload).map(Some)
        }
        (Addressee::Account, ns::DISCO_ITEMS, "query", true) => {
            disco::account_items(payload).map(Some)
        }
        (Addressee::Server, ns::PING, "ping", true) => Ok(None),
        (Addressee::Server, ns::VERSION, "query", true) => {
            Ok(Some(xmppd_proto::xep::version::answer()))
        }
        _ => Err(ErrorCondition::ServiceUnavailable),
    };
    match res {
        Ok(p) => Some(stanza::iq_result(iq, p)),
        Err(c) => stanza::error_reply(iq, c, None),
    }
}

/// The one child element of an iq get/set, if there is exactly one.
pub fn single_payload(iq: &Element) -> Option<&Element> {
    let mut it = iq.children();
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(s: &str) -> Element {
        s.parse().expect("xml")
    }

    #[test]
    fn ping_and_unknown() {
        let r = handle(&iq("<iq xmlns='jabber:client' type='get' id='p' from='a@x/r' to='x'><ping xmlns='urn:xmpp:ping'/></iq>"), Addressee::Server)
            .expect("reply");
        assert_eq!(r.attr("type"), Some("result"));
        assert_eq!(r.attr("to"), Some("a@x/r"));
        let r = handle(
            &iq("<iq xmlns='jabber:client' type='get' id='q'><query xmlns='urn:unknown'/></iq>"),
            Addressee::Server,
        )
        .expect("reply");
        assert_eq!(r.attr("type"), Some("error"));
        assert!(
            r.get_child("error", ns::CLIENT)
                .is_some_and(|e| e.has_child("service-unavailable", ns::STANZAS))
        );
        let r = handle(
            &iq("<iq xmlns='jabber:client' type='get' id='q'/>"),
            Addressee::Server,
        )
        .expect("reply");
        assert!(
            r.get_child("error", ns::CLIENT)
                .is_some_and(|e| e.has_child("bad-request", ns::STANZAS))
        );
        assert!(
            handle(
                &iq("<iq xmlns='jabber:client' type='result' id='q'/>"),
                Addressee::Server
            )
            .is_none()
        );
    }

    #[test]
    fn disco_lists_features() {
        let r = handle(&iq("<iq xmlns='jabber:client' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"), Addressee::Server)
            .expect("reply");
        let q = r.get_child("query", ns::DISCO_INFO).expect("query");
        let vars: Vec<_> = q.children().filter_map(|c| c.attr("var")).collect();
        assert!(vars.contains(&ns::PING));
        assert!(
            q.get_child("identity", ns::DISCO_INFO)
                .is_some_and(|i| i.attr("category") == Some("server"))
        );
    }
}

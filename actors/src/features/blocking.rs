//! The blocking command (XEP-0191): the account actor keeps the blocklist, each
//! session a copy that its taps check both ways (§3.3, §3.4).

use super::taps::{Tap, TapCall, TapPoint, Verdict};
use super::{Entity, Feature, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::im::blocking::{NS, blocked_error, blocks};
use xmppd_proto::stanza::{ErrorCondition, Kind};

pub const FEATURE: Feature = Feature {
    name: "blocking",
    enabled: always,
    disco: &[(Entity::Server, NS)],
    iq: &[route("blocklist"), route("block"), route("unblock")],
    stream: None,
    taps: &[
        Tap {
            point: TapPoint::Sent,
            run: sent,
        },
        Tap {
            point: TapPoint::Delivered,
            run: delivered,
        },
    ],
};

/// Every element of the namespace goes to the account, which answers a wrong type
/// (`blocklist` set, `block` get...) with the error XEP-0191 names.
const fn route(element: &'static str) -> IqRoute {
    IqRoute {
        to: Entity::Account,
        ns: NS,
        element,
        types: Types::GetSet,
        from: Who::Owner,
        handler: IqHandler::Account(crate::account::iq::blocking),
    }
}

/// §3.4: nothing goes to someone the user blocks; the client learns why.
fn sent(c: &TapCall<'_>) -> Verdict {
    if !blocks(c.session.blocked, c.peer) {
        return Verdict::Pass;
    }
    Verdict::Refuse {
        cond: ErrorCondition::NotAcceptable,
        error: Some(blocked_error),
    }
}

/// §3.3: nothing from someone the user blocks; messages and requests are answered
/// `service-unavailable` (as if the user were not there), the rest is dropped.
fn delivered(c: &TapCall<'_>) -> Verdict {
    if !blocks(c.session.blocked, c.peer) {
        return Verdict::Pass;
    }
    match (c.kind, c.ty) {
        (Kind::Message, _) | (Kind::Iq, Some("get") | Some("set")) => Verdict::Refuse {
            cond: ErrorCondition::ServiceUnavailable,
            error: None,
        },
        _ => Verdict::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::super::taps::{self, SessionView};
    use super::*;
    use xmpp_parsers::jid::Jid;

    fn call<'a>(
        point: TapPoint,
        kind: Kind,
        ty: Option<&'a str>,
        peer: &'a Jid,
        blocked: &'a [String],
    ) -> TapCall<'a> {
        TapCall {
            point,
            kind,
            ty,
            peer,
            session: SessionView { blocked },
        }
    }

    #[test]
    fn blocked_peers_both_ways() {
        let spam = Jid::new("spam@evil.example/x").expect("jid");
        let friend = Jid::new("bob@example.org/y").expect("jid");
        let list = vec!["evil.example".to_string()];
        let run = |point, kind, ty, peer| taps::run(&call(point, kind, ty, peer, &list));
        assert!(matches!(
            run(TapPoint::Sent, Kind::Message, Some("chat"), &spam),
            Verdict::Refuse {
                cond: ErrorCondition::NotAcceptable,
                error: Some(_)
            }
        ));
        assert!(run(TapPoint::Sent, Kind::Presence, None, &friend).passes());
        assert!(matches!(
            run(TapPoint::Delivered, Kind::Message, Some("chat"), &spam),
            Verdict::Refuse {
                cond: ErrorCondition::ServiceUnavailable,
                error: None
            }
        ));
        assert!(matches!(
            run(TapPoint::Delivered, Kind::Iq, Some("get"), &spam),
            Verdict::Refuse { .. }
        ));
        assert!(matches!(
            run(TapPoint::Delivered, Kind::Iq, Some("result"), &spam),
            Verdict::Drop
        ));
        assert!(matches!(
            run(TapPoint::Delivered, Kind::Presence, None, &spam),
            Verdict::Drop
        ));
        assert!(run(TapPoint::Delivered, Kind::Message, None, &friend).passes());
        // an empty blocklist passes everything
        let none: Vec<String> = Vec::new();
        let c = call(TapPoint::Delivered, Kind::Message, None, &spam, &none);
        assert!(taps::run(&c).passes());
    }
}

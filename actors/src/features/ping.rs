//! XMPP Ping (XEP-0199): the server answers pings addressed to it.

use super::{Entity, Feature, IqAnswer, IqCall, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::ns;

pub const FEATURE: Feature = Feature {
    name: "ping",
    enabled: always,
    disco: &[(Entity::Server, ns::PING)],
    iq: &[IqRoute {
        to: Entity::Server,
        ns: ns::PING,
        element: "ping",
        types: Types::Get,
        from: Who::Anyone,
        handler: IqHandler::Pure(pong),
    }],
    stream: None,
    taps: &[],
};

fn pong(_: &IqCall<'_>) -> IqAnswer {
    Ok(None)
}

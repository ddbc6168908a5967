//! Software Version (XEP-0092) of the server.

use super::{Entity, Feature, IqAnswer, IqCall, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::ns;

pub const FEATURE: Feature = Feature {
    name: "version",
    enabled: always,
    disco: &[(Entity::Server, ns::VERSION)],
    iq: &[IqRoute {
        to: Entity::Server,
        ns: ns::VERSION,
        element: "query",
        types: Types::Get,
        from: Who::Anyone,
        handler: IqHandler::Pure(answer),
    }],
    stream: None,
    taps: &[],
};

fn answer(_: &IqCall<'_>) -> IqAnswer {
    Ok(Some(xmppd_proto::xep::version::answer()))
}

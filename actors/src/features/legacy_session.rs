//! RFC 3921 session establishment: a no-op kept for old clients, offered as optional
//! (RFC 6121 Appendix E).

use super::{
    Entity, Feature, IqAnswer, IqCall, IqHandler, IqRoute, StreamFeature, Types, Who, always,
};
use xmppd_proto::ns;

pub const FEATURE: Feature = Feature {
    name: "session",
    enabled: always,
    disco: &[],
    iq: &[IqRoute {
        to: Entity::Session,
        ns: ns::SESSION,
        element: "session",
        types: Types::Set,
        from: Who::Owner,
        handler: IqHandler::Pure(established),
    }],
    stream: Some(StreamFeature {
        after_auth: true,
        xml: |_| "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>",
    }),
    taps: &[],
};

fn established(_: &IqCall<'_>) -> IqAnswer {
    Ok(None)
}

//! Resource binding (RFC 6120 §7): done by the stream negotiation; a bound session
//! asking again is refused.

use super::{
    Entity, Feature, IqAnswer, IqCall, IqError, IqHandler, IqRoute, StreamFeature, Types, Who,
    always,
};
use xmppd_proto::ns;
use xmppd_proto::stanza::ErrorCondition;

pub const FEATURE: Feature = Feature {
    name: "bind",
    enabled: always,
    disco: &[],
    iq: &[
        IqRoute {
            to: Entity::Stream,
            ns: ns::BIND,
            element: "bind",
            types: Types::Set,
            from: Who::Owner,
            handler: IqHandler::Stream(crate::stream::c2s::bind_iq),
        },
        IqRoute {
            to: Entity::Session,
            ns: ns::BIND,
            element: "bind",
            types: Types::GetSet,
            from: Who::Owner,
            handler: IqHandler::Pure(already_bound),
        },
    ],
    stream: Some(StreamFeature {
        after_auth: true,
        xml: |_| "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>",
    }),
    taps: &[],
};

fn already_bound(_: &IqCall<'_>) -> IqAnswer {
    Err(IqError {
        cond: ErrorCondition::NotAllowed,
        text: Some("already bound"),
    })
}

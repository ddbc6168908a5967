//! Non-SASL authentication (XEP-0078), for old clients, when `auth.legacy_auth` is on.

use super::{Entity, Feature, IqHandler, IqRoute, StreamFeature, Types, Who};
use xmppd_proto::ns;

pub const FEATURE: Feature = Feature {
    name: "legacy-auth",
    enabled: |env| env.settings.auth.legacy_auth,
    disco: &[],
    iq: &[IqRoute {
        to: Entity::Stream,
        ns: ns::IQ_AUTH,
        element: "query",
        types: Types::GetSet,
        from: Who::Owner,
        handler: IqHandler::Stream(crate::stream::c2s::legacy_auth_iq),
    }],
    stream: Some(StreamFeature {
        after_auth: false,
        xml: |_| "<auth xmlns='http://jabber.org/features/iq-auth'/>",
    }),
    taps: &[],
};

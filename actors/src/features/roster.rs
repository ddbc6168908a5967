//! The roster (RFC 6121 §2), with versioning (§2.6) and subscription pre-approval
//! (§3.4) advertised as stream features.

use super::{Entity, Feature, IqHandler, IqRoute, StreamFeature, Types, Who, always};
use xmppd_proto::im::roster::NS_ROSTER;

pub const FEATURE: Feature = Feature {
    name: "roster",
    enabled: always,
    disco: &[],
    iq: &[IqRoute {
        to: Entity::Account,
        ns: NS_ROSTER,
        element: "query",
        types: Types::GetSet,
        from: Who::Owner,
        handler: IqHandler::Account(crate::account::iq::roster),
    }],
    stream: Some(StreamFeature {
        after_auth: true,
        xml: |_| "<ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/>",
    }),
    taps: &[],
};

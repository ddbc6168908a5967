//! Private XML storage (XEP-0049), for the account itself only.

use super::{Entity, Feature, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::ns;

pub const FEATURE: Feature = Feature {
    name: "private",
    enabled: always,
    disco: &[(Entity::Server, ns::PRIVATE)],
    iq: &[IqRoute {
        to: Entity::Account,
        ns: ns::PRIVATE,
        element: "query",
        types: Types::GetSet,
        from: Who::Owner,
        handler: IqHandler::Account(crate::account::iq::document),
    }],
    stream: None,
    taps: &[],
};

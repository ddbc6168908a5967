//! The blocking command (XEP-0191): the account actor keeps the blocklist.

use super::{Entity, Feature, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::im::blocking::NS;

pub const FEATURE: Feature = Feature {
    name: "blocking",
    enabled: always,
    disco: &[(Entity::Server, NS)],
    iq: &[route("blocklist"), route("block"), route("unblock")],
    stream: None,
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

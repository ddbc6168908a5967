//! vcard-temp (XEP-0054): anyone may read an account's vCard, only its owner change it.

use super::{Entity, Feature, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::ns;

pub const FEATURE: Feature = Feature {
    name: "vcard",
    enabled: always,
    disco: &[(Entity::Server, ns::VCARD), (Entity::Account, ns::VCARD)],
    iq: &[
        IqRoute {
            to: Entity::Account,
            ns: ns::VCARD,
            element: "vCard",
            types: Types::Get,
            from: Who::Anyone,
            handler: IqHandler::Account(crate::account::iq::document),
        },
        IqRoute {
            to: Entity::Account,
            ns: ns::VCARD,
            element: "vCard",
            types: Types::Set,
            from: Who::Owner,
            handler: IqHandler::Account(crate::account::iq::document),
        },
    ],
    stream: None,
    taps: &[],
};

//! Service discovery (XEP-0030) of the server and of accounts, generated from the
//! feature table.

use super::{Entity, Feature, IqAnswer, IqCall, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::ns;
use xmppd_proto::xep::disco;

pub const FEATURE: Feature = Feature {
    name: "disco",
    enabled: always,
    disco: &[
        (Entity::Server, ns::DISCO_INFO),
        (Entity::Server, ns::DISCO_ITEMS),
        (Entity::Account, ns::DISCO_INFO),
    ],
    iq: &[
        route(Entity::Server, ns::DISCO_INFO, server_info),
        route(Entity::Server, ns::DISCO_ITEMS, server_items),
        route(Entity::Account, ns::DISCO_INFO, account_info),
        route(Entity::Account, ns::DISCO_ITEMS, account_items),
    ],
    stream: None,
    taps: &[],
};

const fn route(to: Entity, ns: &'static str, f: fn(&IqCall<'_>) -> IqAnswer) -> IqRoute {
    IqRoute {
        to,
        ns,
        element: "query",
        types: Types::Get,
        from: Who::Anyone,
        handler: IqHandler::Pure(f),
    }
}

fn server_info(c: &IqCall<'_>) -> IqAnswer {
    let vars = super::advertised(c.env, Entity::Server);
    Ok(Some(disco::server_info(c.payload, &vars)?))
}

/// The components attached now, with the name configured for each.
fn server_items(c: &IqCall<'_>) -> IqAnswer {
    let items: Vec<(&str, Option<&str>)> = c
        .env
        .components
        .iter()
        .map(|d| {
            let name = c
                .env
                .settings
                .component(d)
                .map(|s| s.description.as_str())
                .filter(|n| !n.is_empty());
            (d.as_str(), name)
        })
        .collect();
    Ok(Some(disco::server_items(c.payload, &items)?))
}

fn account_info(c: &IqCall<'_>) -> IqAnswer {
    let vars = super::advertised(c.env, Entity::Account);
    Ok(Some(disco::account_info(c.payload, &vars)?))
}

fn account_items(c: &IqCall<'_>) -> IqAnswer {
    Ok(Some(disco::account_items(c.payload)?))
}

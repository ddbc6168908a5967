//! Service discovery (XEP-0030) of the server and of accounts, generated from the
//! feature table.

use super::{Entity, Env, Feature, IqAnswer, IqCall, IqHandler, IqRoute, Types, Who, always};
use xmppd_proto::config::DiscoItem;
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
    if let Some(a) = super::adhoc::disco_info(c) {
        return a;
    }
    let vars = super::advertised(c.env, Entity::Server);
    Ok(Some(disco::server_info(c.payload, &vars)?))
}

fn server_items(c: &IqCall<'_>) -> IqAnswer {
    if let Some(a) = super::adhoc::disco_items(c) {
        return a;
    }
    Ok(Some(disco::server_items(c.payload, &items(c.env))?))
}

/// Where the items of a domain's disco#items come from, in the order they are listed.
/// Each source reads what it needs from the environment at the time of the request, so
/// a reload or a service attaching shows at the next request.
pub static ITEM_SOURCES: &[fn(&Env<'_>) -> Vec<DiscoItem>] = &[rooms, components, supplementary];

/// The domain's chat-room service (XEP-0045 §6.1: the server lists it in its items).
fn rooms(env: &Env<'_>) -> Vec<DiscoItem> {
    let muc = &env.settings.muc;
    match env.domain {
        Some(d) if muc.enabled => vec![DiscoItem {
            jid: format!("{}.{}", muc.subdomain, d.name),
            name: Some("Chat rooms".to_string()),
            node: None,
        }],
        _ => Vec::new(),
    }
}

/// The items of the domain at hand: every source's, each JID and node once (the first source
/// that names it wins).
pub fn items(env: &Env<'_>) -> Vec<DiscoItem> {
    let mut out: Vec<DiscoItem> = Vec::new();
    for it in ITEM_SOURCES.iter().flat_map(|source| source(env)) {
        if !out.iter().any(|o| o.jid == it.jid && o.node == it.node) {
            out.push(it);
        }
    }
    out
}

/// The trusted components attached now that are subdomains of the domain asked
/// (`irc.example.org` under `example.org`), with the name configured for each. Read
/// only here, when disco#items is asked.
fn components(env: &Env<'_>) -> Vec<DiscoItem> {
    let (Some(live), Some(domain)) = (env.components, env.domain) else {
        return Vec::new();
    };
    let suffix = format!(".{}", domain.name.to_ascii_lowercase());
    live.get()
        .iter()
        .filter(|d| d.to_ascii_lowercase().ends_with(&suffix))
        .map(|d| DiscoItem {
            jid: d.clone(),
            name: env
                .settings
                .component(d)
                .map(|s| s.description.clone())
                .filter(|n| !n.is_empty()),
            node: None,
        })
        .collect()
}

/// The administrator's supplementary items for the domain (`[[domain]] disco_items`).
fn supplementary(env: &Env<'_>) -> Vec<DiscoItem> {
    env.domain
        .map(|d| d.disco_items.clone())
        .unwrap_or_default()
}

fn account_info(c: &IqCall<'_>) -> IqAnswer {
    let vars = super::advertised(c.env, Entity::Account);
    Ok(Some(disco::account_info(c.payload, &vars)?))
}

fn account_items(c: &IqCall<'_>) -> IqAnswer {
    Ok(Some(disco::account_items(c.payload)?))
}

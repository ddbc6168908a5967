//! XEP-0030 service discovery: what the server and its accounts say about themselves.

use crate::config::DiscoItem;
use crate::ns;
use crate::stanza::set_attr;
use minidom::Element;

fn identity(category: &str, ty: &str, name: Option<&str>) -> Element {
    let mut i = Element::bare("identity", ns::DISCO_INFO);
    set_attr(&mut i, "category", category);
    set_attr(&mut i, "type", ty);
    if let Some(n) = name {
        set_attr(&mut i, "name", n);
    }
    i
}

fn info(node: Option<&str>, identities: Vec<Element>, features: &[&str]) -> Element {
    let mut q = Element::bare("query", ns::DISCO_INFO);
    if let Some(n) = node {
        set_attr(&mut q, "node", n);
    }
    for i in identities {
        q.append_child(i);
    }
    for f in features {
        let mut e = Element::bare("feature", ns::DISCO_INFO);
        set_attr(&mut e, "var", f);
        q.append_child(e);
    }
    q
}

/// disco#info of the server, listing `features`.
pub fn server_info(
    query: &Element,
    features: &[&str],
) -> Result<Element, crate::stanza::ErrorCondition> {
    if query.attr("node").is_some() {
        return Err(crate::stanza::ErrorCondition::ItemNotFound);
    }
    Ok(info(
        None,
        vec![identity("server", "im", Some("xmppd"))],
        features,
    ))
}

/// disco#items of the server (as one of its domains): `items`, each with its JID and
/// its name and node when it has them (XEP-0030 §4.2).
pub fn server_items(
    query: &Element,
    items: &[DiscoItem],
) -> Result<Element, crate::stanza::ErrorCondition> {
    if query.attr("node").is_some() {
        return Err(crate::stanza::ErrorCondition::ItemNotFound);
    }
    let mut q = Element::bare("query", ns::DISCO_ITEMS);
    for it in items {
        let mut e = Element::bare("item", ns::DISCO_ITEMS);
        set_attr(&mut e, "jid", &it.jid);
        if let Some(n) = &it.name {
            set_attr(&mut e, "name", n);
        }
        if let Some(n) = &it.node {
            set_attr(&mut e, "node", n);
        }
        q.append_child(e);
    }
    Ok(q)
}

/// disco#info of an account (answered by the server on the account's behalf), listing
/// `features`.
pub fn account_info(
    query: &Element,
    features: &[&str],
) -> Result<Element, crate::stanza::ErrorCondition> {
    if query.attr("node").is_some() {
        return Err(crate::stanza::ErrorCondition::ItemNotFound);
    }
    Ok(info(
        None,
        vec![identity("account", "registered", None)],
        features,
    ))
}

/// disco#items of an account: none, and no nodes (XEP-0030 §4.3: `item-not-found`).
pub fn account_items(query: &Element) -> Result<Element, crate::stanza::ErrorCondition> {
    if query.attr("node").is_some() {
        return Err(crate::stanza::ErrorCondition::ItemNotFound);
    }
    Ok(Element::bare("query", ns::DISCO_ITEMS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_carry_jid_name_and_node() {
        let q = Element::bare("query", ns::DISCO_ITEMS);
        let items = [
            DiscoItem {
                jid: "irc.example.org".into(),
                name: Some("IRC".into()),
                node: None,
            },
            DiscoItem {
                jid: "room@muc.example.net".into(),
                name: None,
                node: Some("n1".into()),
            },
        ];
        let r = server_items(&q, &items).expect("items");
        let got: Vec<_> = r
            .children()
            .map(|i| (i.attr("jid"), i.attr("name"), i.attr("node")))
            .collect();
        assert_eq!(
            got,
            [
                (Some("irc.example.org"), Some("IRC"), None),
                (Some("room@muc.example.net"), None, Some("n1")),
            ]
        );
        let mut with_node = q.clone();
        set_attr(&mut with_node, "node", "x");
        assert!(server_items(&with_node, &items).is_err());
    }
}

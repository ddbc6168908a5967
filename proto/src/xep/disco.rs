//! XEP-0030 service discovery: what the server and its accounts say about themselves.

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

/// disco#items of the server: one `<item/>` per entity given (JID and optional name),
/// in order: the trusted components attached now.
pub fn server_items(
    query: &Element,
    items: &[(&str, Option<&str>)],
) -> Result<Element, crate::stanza::ErrorCondition> {
    if query.attr("node").is_some() {
        return Err(crate::stanza::ErrorCondition::ItemNotFound);
    }
    let mut q = Element::bare("query", ns::DISCO_ITEMS);
    for (jid, name) in items {
        let mut i = Element::bare("item", ns::DISCO_ITEMS);
        set_attr(&mut i, "jid", jid);
        if let Some(n) = name {
            set_attr(&mut i, "name", n);
        }
        q.append_child(i);
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

/// disco#items of an account: none.
pub fn account_items(_query: &Element) -> Result<Element, crate::stanza::ErrorCondition> {
    Ok(Element::bare("query", ns::DISCO_ITEMS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_items_lists_each_entity_given() {
        let q = Element::bare("query", ns::DISCO_ITEMS);
        let r =
            server_items(&q, &[("irc.example", Some("IRC")), ("gw.example", None)]).expect("items");
        let items: Vec<(Option<&str>, Option<&str>)> = r
            .children()
            .map(|i| (i.attr("jid"), i.attr("name")))
            .collect();
        assert_eq!(
            items,
            vec![
                (Some("irc.example"), Some("IRC")),
                (Some("gw.example"), None)
            ]
        );
        assert_eq!(server_items(&q, &[]).expect("none").children().count(), 0);
        let mut with_node = q.clone();
        set_attr(&mut with_node, "node", "x");
        assert!(server_items(&with_node, &[]).is_err());
    }
}

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

/// disco#items of the server (components and administrator items come later).
pub fn server_items(query: &Element) -> Result<Element, crate::stanza::ErrorCondition> {
    if query.attr("node").is_some() {
        return Err(crate::stanza::ErrorCondition::ItemNotFound);
    }
    Ok(Element::bare("query", ns::DISCO_ITEMS))
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

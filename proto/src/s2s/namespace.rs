//! Stanzas change default namespace at the server's edge: `jabber:server` on a server
//! stream, `jabber:client` inside the server (signals, storage, client streams).

use minidom::{Element, Node};

/// A copy of `el` with every element in namespace `from` moved to `to` (children in
/// other namespaces, and everything below them, are kept as they are).
pub fn rename(el: &Element, from: &str, to: &str) -> Element {
    if !el.has_ns(from) {
        return el.clone();
    }
    let mut out = Element::builder(el.name(), to).build();
    *out.attrs_mut() = el.attrs().clone();
    for node in el.nodes() {
        match node {
            Node::Text(t) => out.append_text_node(t.clone()),
            Node::Element(c) => {
                out.append_child(rename(c, from, to));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ns;

    #[test]
    fn only_the_stream_namespace_moves() {
        let el: Element = "<message xmlns='jabber:server' from='a@b' to='c@d' type='chat'>\
            <body>hi &amp; bye</body><x xmlns='urn:y'><body/></x></message>"
            .parse()
            .expect("xml");
        let c = rename(&el, ns::SERVER, ns::CLIENT);
        assert!(c.is("message", ns::CLIENT));
        assert_eq!(c.attr("to"), Some("c@d"));
        assert!(c.get_child("body", ns::CLIENT).is_some());
        assert_eq!(
            c.get_child("body", ns::CLIENT).map(|b| b.text()),
            Some("hi & bye".into())
        );
        let x = c.get_child("x", "urn:y").expect("x kept");
        assert!(
            x.get_child("body", "urn:y").is_some(),
            "a foreign subtree is untouched"
        );
        assert_eq!(rename(&c, ns::CLIENT, ns::SERVER), el);
    }
}

//! Serialising elements for the wire.
//!
//! A direct writer over minidom's tree: one pre-sized buffer, escaping only where a
//! special character occurs, namespace declarations only where an element's namespace
//! differs from its parent's. Every result is a self-contained element (the outermost
//! one declares its namespace), so it can also be stored and parsed on its own.

use crate::xml::escape::escape_into as escape;
use minidom::{Element, Node};

/// The element as UTF-8 XML, without an XML declaration.
pub fn to_bytes(el: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimate(el));
    write(el, None, &mut out);
    out
}

/// The element as written inside a stream whose default namespace is `default_ns`:
/// elements in that namespace carry no declaration, so the peer reads them in its
/// stream's own default namespace (a `jabber:client` stanza written with
/// `default_ns = jabber:client` reads as `jabber:component:accept` on a component
/// stream). Not self-contained: for that stream only.
pub fn to_bytes_in(el: &Element, default_ns: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimate(el));
    write(el, Some(default_ns), &mut out);
    out
}

/// [`to_bytes_in`], appended to `out` (several stanzas serialised into one buffer, for
/// one write).
pub fn append_in(el: &Element, default_ns: &str, out: &mut Vec<u8>) {
    out.reserve(estimate(el));
    write(el, Some(default_ns), out);
}

pub fn to_string(el: &Element) -> String {
    String::from_utf8(to_bytes(el)).unwrap_or_default()
}

/// A cheap upper-ish guess of the serialised size, to allocate once.
fn estimate(el: &Element) -> usize {
    let mut n = 2 * el.name().len() + 48;
    for (_, v) in el.attrs().iter() {
        n += v.len() + 16;
    }
    for node in el.nodes() {
        n += match node {
            Node::Text(t) => t.len() + 8,
            Node::Element(e) => estimate(e),
        };
    }
    n
}

fn write(el: &Element, parent_ns: Option<&str>, out: &mut Vec<u8>) {
    out.push(b'<');
    out.extend_from_slice(el.name().as_bytes());
    let inherited = parent_ns.is_some_and(|p| el.has_ns(p));
    let ns = if inherited { None } else { Some(el.ns()) };
    if let Some(ns) = &ns {
        out.extend_from_slice(b" xmlns='");
        escape(ns, true, out);
        out.push(b'\'');
    }
    let mut generated = 0;
    for ((ans, name), value) in el.attrs().iter() {
        out.push(b' ');
        match ans.as_str() {
            "" => {}
            crate::ns::XML => out.extend_from_slice(b"xml:"),
            other => {
                // a namespaced attribute: declare a prefix for it on this element
                generated += 1;
                let p = format!("ns{generated}");
                out.extend_from_slice(format!("xmlns:{p}='").as_bytes());
                escape(other, true, out);
                out.extend_from_slice(b"' ");
                out.extend_from_slice(p.as_bytes());
                out.push(b':');
            }
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b"='");
        escape(value, true, out);
        out.push(b'\'');
    }
    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    let own_ns = match &ns {
        Some(n) => n.as_str(),
        None => parent_ns.unwrap_or(""),
    };
    for node in nodes {
        match node {
            Node::Text(t) => escape(t, false, out),
            Node::Element(e) => write(e, Some(own_ns), out),
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
}

#[cfg(test)]
mod tests {
    fn round_trip(s: &str) -> String {
        let el: minidom::Element = s.parse().expect("xml");
        let out = super::to_string(&el);
        let back: minidom::Element = out.parse().expect("reparse");
        assert_eq!(back, el, "{out}");
        out
    }

    #[test]
    fn round_trips() {
        let s = round_trip(
            "<message xmlns='jabber:client' to='a@b'><body>x &amp; y &lt;z&gt;</body></message>",
        );
        assert!(s.starts_with("<message xmlns='jabber:client'"), "{s}");
        assert!(s.contains("<body>"), "children inherit the namespace: {s}");
        round_trip(
            "<iq xmlns='jabber:client' type='set' id='a&apos;b'><query xmlns='jabber:iq:roster'><item jid='x@y' name='&quot;q&quot;'><group>G</group></item></query></iq>",
        );
        round_trip(
            "<presence xmlns='jabber:client' xml:lang='en'><x xmlns='urn:a' xmlns:p='urn:p' p:attr='v'><y xmlns='jabber:client'/></x></presence>",
        );
        round_trip(
            "<message xmlns='jabber:client'><body>line&#13;\nnext</body><empty xmlns='urn:e'/></message>",
        );
    }
}

//! Serialising elements for the wire.

use minidom::Element;

/// The element as UTF-8 XML, without an XML declaration.
pub fn to_bytes(el: &Element) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    // Writing to a Vec cannot fail for I/O reasons, and minidom elements are always
    // serialisable (their names and namespaces were validated when built).
    if el.write_to(&mut out).is_err() {
        out.clear();
    }
    out
}

pub fn to_string(el: &Element) -> String {
    String::from_utf8(to_bytes(el)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let el: minidom::Element =
            "<message xmlns='jabber:client' to='a@b'><body>x &amp; y</body></message>"
                .parse()
                .expect("xml");
        let s = super::to_string(&el);
        assert!(s.starts_with("<message xmlns='jabber:client'"), "{s}");
        let back: minidom::Element = s.parse().expect("reparse");
        assert_eq!(back, el);
    }
}

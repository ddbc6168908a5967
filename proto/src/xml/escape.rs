//! XML escaping: for the XML writer (`escape_into`) and the few places that write XML
//! as text (`escape_text`, `escape_attr`).

use std::borrow::Cow;

/// Escape character data (`&`, `<`, `>`).
pub fn escape_text(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Escape an attribute value for either quote style.
pub fn escape_attr(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, attr: bool) -> Cow<'_, str> {
    if !s.bytes().any(|b| replacement(b, attr).is_some()) {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len() + 8);
    escape_into(s, attr, &mut out);
    // only ASCII bytes were replaced, by ASCII
    Cow::Owned(String::from_utf8(out).unwrap_or_default())
}

/// What a byte is written as, when not as itself.
#[inline]
fn replacement(b: u8, attr: bool) -> Option<&'static [u8]> {
    Some(match b {
        b'&' => b"&amp;",
        b'<' => b"&lt;",
        b'>' => b"&gt;",
        b'\'' if attr => b"&apos;",
        b'"' if attr => b"&quot;",
        // a CR written raw would be normalised away by the reader
        b'\r' => b"&#13;",
        _ => return None,
    })
}

/// Escape `s` onto the end of `out` (both quotes too when `attr`), copying runs of
/// plain bytes at once: the XML writer's path.
pub fn escape_into(s: &str, attr: bool, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(rep) = replacement(b, attr) {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(rep);
            start = i + 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape_text("a<b&c>"), "a&lt;b&amp;c&gt;");
        assert_eq!(escape_attr("it's \"x\""), "it&apos;s &quot;x&quot;");
        assert!(matches!(escape_text("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_text("a\r\nb"), "a&#13;\nb");
    }
}

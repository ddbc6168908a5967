//! XML in logs with secrets masked: SASL data, legacy and registration passwords.
//!
//! A [`StreamMasker`] follows the XML of one direction of one stream across reads (a
//! tag or a secret split over two reads is still recognised) and finds the character
//! data to hide: everything inside
//!
//! - SASL's `auth`, `response` and `success`, and any `password` or `digest` element
//!   (XEP-0078, XEP-0077 legacy fields);
//! - a `jabber:iq:register` query (usernames and instructions included: the form
//!   carries the password in ways a field name cannot tell);
//! - a data form field whose `type` is `text-private` or whose `var` is `password`
//!   (or XEP-0133's `password-verify`).
//!
//! Element names are matched by local name (any prefix), attribute values after
//! entity decoding (`var='passw&#111;rd'`). Only character data is replaced (by
//! `***`); tags stay as they are, so the log still shows the structure.

use std::ops::Range;

/// Tag bytes kept while a tag is split across reads; a longer tag is passed through
/// without a look at its attributes (the parser refuses far less anyway).
const MAX_TAG: usize = 8 * 1024;

/// Whether the raw XML of streams is logged at all (All Info for `XMPPI`/`XMPPO` or
/// globally). The transports follow their streams with a [`StreamMasker`] only while it
/// is on: masking costs about a third of parsing, and nothing needs hiding when nothing
/// is written.
pub static XML_LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether [`XML_LOGGED`] is on.
#[inline]
pub fn xml_logged() -> bool {
    XML_LOGGED.load(std::sync::atomic::Ordering::Relaxed)
}

/// The masking state of one direction of one stream.
#[derive(Debug, Default)]
pub struct StreamMasker {
    /// A tag is being read (from `<`), possibly split across reads.
    in_tag: bool,
    /// Its bytes so far (the buffer is reused from tag to tag).
    tag: Vec<u8>,
    /// The tag being read was too long to keep: skip to its end.
    skipping: bool,
    /// Quote character inside the current tag's attribute value.
    quote: Option<u8>,
    /// Element depth now.
    depth: usize,
    /// The depth at which a secret element started: text below it is hidden.
    secret_from: Option<usize>,
}

/// One read with the byte ranges to hide.
pub struct Masked<'a> {
    data: &'a [u8],
    hide: Vec<Range<usize>>,
}

impl StreamMasker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Follow one read; returns it as a lazily formatted log value (the ranges to
    /// hide are found now, the string is built only if the record is written).
    pub fn mask<'a>(&mut self, data: &'a [u8]) -> Masked<'a> {
        let hide = self.scan(data);
        Masked { data, hide }
    }

    /// The ranges of `data` that are secret character data.
    fn scan(&mut self, data: &[u8]) -> Vec<Range<usize>> {
        let mut hide: Vec<Range<usize>> = Vec::new();
        let mut push = |i: usize| match hide.last_mut() {
            Some(r) if r.end == i => r.end = i + 1,
            _ => hide.push(i..i + 1),
        };
        for (i, &b) in data.iter().enumerate() {
            if !self.in_tag {
                if b == b'<' {
                    self.in_tag = true;
                    self.tag.clear();
                    self.tag.push(b'<');
                    self.quote = None;
                    self.skipping = false;
                } else if self.secret_from.is_some() {
                    push(i);
                }
                continue;
            }
            let cdata = self.tag.starts_with(b"<!");
            if cdata && self.secret_from.is_some() {
                push(i);
            }
            if !self.skipping {
                if self.tag.len() < MAX_TAG {
                    self.tag.push(b);
                } else {
                    self.skipping = true;
                }
            }
            let end = if cdata {
                // <![CDATA[ ... ]]> (or a comment): ends at "]]>" / "-->"
                b == b'>'
                    && (self.skipping || self.tag.ends_with(b"]]>") || self.tag.ends_with(b"-->"))
            } else {
                match (self.quote, b) {
                    (Some(q), c) if c == q => {
                        self.quote = None;
                        false
                    }
                    (Some(_), _) => false,
                    (None, b'\'' | b'"') => {
                        self.quote = Some(b);
                        false
                    }
                    (None, b'>') => true,
                    (None, _) => false,
                }
            };
            if end {
                self.in_tag = false;
                if !cdata {
                    let tag = std::mem::take(&mut self.tag);
                    self.close_tag(&tag);
                    self.tag = tag;
                }
            }
        }
        hide
    }

    /// A complete tag was read.
    fn close_tag(&mut self, tag: &[u8]) {
        if self.skipping {
            // too long to look at: only its effect on depth counts
            self.skipping = false;
            if tag.starts_with(b"</") {
                self.end_element();
            } else if !tag.starts_with(b"<?") && !tag.ends_with(b"/>") {
                self.depth += 1;
            }
            return;
        }
        let text = String::from_utf8_lossy(tag);
        if text.starts_with("<?") {
            return;
        }
        if text.starts_with("</") {
            return self.end_element();
        }
        let empty = text.ends_with("/>");
        let inner = text
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim_end_matches('/');
        let (name, attrs) = match inner.find(|c: char| c.is_ascii_whitespace()) {
            Some(at) => (&inner[..at], &inner[at..]),
            None => (inner, ""),
        };
        let local = name.rsplit(':').next().unwrap_or(name);
        let secret = match local {
            "auth" | "response" | "success" | "password" | "digest" => true,
            "query" => attributes(attrs).iter().any(|(k, v)| {
                (k == "xmlns" || k.starts_with("xmlns:")) && v == "jabber:iq:register"
            }),
            "field" => {
                let attrs = attributes(attrs);
                let attr = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
                attr("type") == Some("text-private")
                    || matches!(attr("var"), Some("password" | "password-verify"))
            }
            _ => false,
        };
        if empty {
            return;
        }
        if secret && self.secret_from.is_none() {
            self.secret_from = Some(self.depth);
        }
        self.depth = self.depth.saturating_add(1);
    }

    fn end_element(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.secret_from == Some(self.depth) {
            self.secret_from = None;
        }
    }
}

/// The attributes of a start tag, values entity-decoded (malformed ones skipped).
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let Some(q) = after.chars().next().filter(|c| *c == '\'' || *c == '"') else {
            break;
        };
        let Some(close) = after[1..].find(q) else {
            break;
        };
        out.push((name, decode(&after[1..1 + close])));
        rest = &after[close + 2..];
    }
    out
}

/// Replace XML's predefined and numeric character references.
fn decode(v: &str) -> String {
    if !v.contains('&') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';').filter(|s| *s <= 12) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let ent = &rest[1..semi];
        let c = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => ent
                .strip_prefix("#x")
                .or_else(|| ent.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl Masked<'_> {
    fn render(&self) -> String {
        let mut out = String::with_capacity(self.data.len());
        let mut at = 0;
        for r in &self.hide {
            out.push_str(&String::from_utf8_lossy(&self.data[at..r.start]));
            out.push_str("***");
            at = r.end;
        }
        out.push_str(&String::from_utf8_lossy(&self.data[at..]));
        out
    }
}

impl slog::Value for Masked<'_> {
    fn serialize(
        &self,
        _: &slog::Record,
        key: slog::Key,
        ser: &mut dyn slog::Serializer,
    ) -> slog::Result {
        ser.emit_str(key, &self.render())
    }
}

/// Mask one self-contained piece of XML (a fresh masker).
pub fn masked(xml: &str) -> String {
    StreamMasker::new().mask(xml.as_bytes()).render()
}

#[cfg(test)]
mod tests {
    use super::{StreamMasker, masked};

    #[test]
    fn masks_secrets() {
        assert_eq!(
            masked(
                "<auth xmlns='x' mechanism='PLAIN'>AGFsaWNlAHB3</auth><message><body>hi</body></message>"
            ),
            "<auth xmlns='x' mechanism='PLAIN'>***</auth><message><body>hi</body></message>"
        );
        assert_eq!(
            masked("<query><password>pw</password></query>"),
            "<query><password>***</password></query>"
        );
        assert_eq!(
            masked("<authors>x</authors><password/>"),
            "<authors>x</authors><password/>"
        );
        assert_eq!(
            masked("<field type=\"text-private\" var=\"pin\"><value>1234</value></field>"),
            "<field type=\"text-private\" var=\"pin\"><value>***</value></field>"
        );
        // XEP-0133 add-user, submitted without the field types
        assert_eq!(
            masked("<field var='password-verify'><value>pw</value></field>"),
            "<field var='password-verify'><value>***</value></field>"
        );
    }

    #[test]
    fn everything_inside_a_registration_query_is_hidden() {
        assert_eq!(
            masked(
                "<iq type='set'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
                 <field var='username'><value>bill</value></field>\
                 <field var='pass'><value xmlns='jabber:x:data'>Calliope</value></field></x></query></iq>\
                 <message><body>after</body></message>"
            ),
            "<iq type='set'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='username'><value>***</value></field>\
             <field var='pass'><value xmlns='jabber:x:data'>***</value></field></x></query></iq>\
             <message><body>after</body></message>"
        );
    }

    #[test]
    fn prefixes_entities_and_cdata_do_not_hide_a_secret() {
        // a prefixed SASL element and a prefixed registration query
        assert_eq!(
            masked("<s:auth xmlns:s='urn:ietf:params:xml:ns:xmpp-sasl'>c2VjcmV0</s:auth>"),
            "<s:auth xmlns:s='urn:ietf:params:xml:ns:xmpp-sasl'>***</s:auth>"
        );
        assert_eq!(
            masked("<r:query xmlns:r='jabber:iq:register'><r:username>u</r:username></r:query>"),
            "<r:query xmlns:r='jabber:iq:register'><r:username>***</r:username></r:query>"
        );
        // an entity-encoded var, a '>' inside an attribute value
        assert_eq!(
            masked("<field label='a>b' var='passw&#111;rd'><value>hunter2</value></field>"),
            "<field label='a>b' var='passw&#111;rd'><value>***</value></field>"
        );
        assert_eq!(
            masked("<field var=\"&#x70;assword\"><value>hunter2</value></field>"),
            "<field var=\"&#x70;assword\"><value>***</value></field>"
        );
        let cdata = masked("<password><![CDATA[hunter2>]]></password><b>x</b>");
        assert!(!cdata.contains("hunter2"), "{cdata}");
        assert!(cdata.ends_with("<b>x</b>"), "{cdata}");
    }

    #[test]
    fn a_secret_split_across_reads_is_still_hidden() {
        let mut m = StreamMasker::new();
        let parts = [
            "<iq type='set'><que",
            "ry xmlns='jabber:iq:reg",
            "ister'><username>bill</username><pass",
            "word>Call",
            "iope</password></query></iq><message><bo",
            "dy>visible</body></message>",
        ];
        let out: String = parts
            .iter()
            .map(|p| m.mask(p.as_bytes()).render())
            .collect();
        for secret in ["Call", "iope", "bill"] {
            assert!(!out.contains(secret), "{secret}: {out}");
        }
        assert!(out.contains("visible"), "{out}");
        // and a field split in its tag, its attribute and its value
        let mut m = StreamMasker::new();
        let parts = [
            "<x xmlns='jabber:x:data'><field type='text-pri",
            "vate' var='pin'><value>12",
            "34</value></field><field var='n'><value>shown</value></field></x>",
        ];
        let out: String = parts
            .iter()
            .map(|p| m.mask(p.as_bytes()).render())
            .collect();
        assert!(!out.contains("12") && !out.contains("34"), "{out}");
        assert!(out.contains("shown"), "{out}");
    }

    #[test]
    fn the_stream_header_and_depth_are_followed() {
        let mut m = StreamMasker::new();
        let a = m
            .mask(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' to='x'>")
            .render();
        assert!(a.contains("stream:stream"));
        let b = m
            .mask(b"<auth mechanism='PLAIN'>AGJpbGwAcHc=</auth><presence/>")
            .render();
        assert_eq!(b, "<auth mechanism='PLAIN'>***</auth><presence/>");
        let c = m.mask(b"<message><body>hello</body></message>").render();
        assert_eq!(c, "<message><body>hello</body></message>");
    }
}

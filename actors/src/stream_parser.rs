//! Incremental (sans-IO) XMPP stream parser.
//!
//! Bytes go in as they arrive from the socket; out come the stream header, one
//! [`minidom::Element`] per top-level element (stanza or negotiation element) and the
//! stream end. rxml enforces XML well-formedness and the restricted XML profile (no
//! DTD, no processing instructions, no comments, no entities beyond the predefined five);
//! this module adds what rxml does not know: the size and depth bounds of a stanza and
//! the default namespace declared on the stream header.

use crate::ns;
use crate::stream_error::{Condition, StreamError};
use minidom::Element;
use rxml::parser::{RawEvent, RawParser};
use rxml::{Event, Parse, Parser, WithOptions, error::EndOrError};
use xso::FromEventsBuilder;
use xso::minidom_compat::ElementFromEvents;

/// The attributes of an opening `<stream:stream>` tag that matter to negotiation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// The default namespace declared on the header (`jabber:client`, `jabber:server`...).
    pub default_ns: Option<String>,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
    /// Namespaces declared with a prefix, as (prefix, namespace) pairs (dialback uses `db`).
    pub prefixes: Vec<(String, String)>,
}

/// What the parser produced from the bytes fed to it.
#[derive(Debug)]
pub enum StreamEvent {
    Header(StreamHeader),
    Stanza(Element),
    End,
}

/// Bounds applied to every stream.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest top-level element, in bytes of XML as received.
    pub max_stanza: usize,
    /// Deepest nesting inside a top-level element (the element itself is depth 1).
    pub max_depth: usize,
    /// Longest single token (name, attribute value); rxml reserves this much per parser.
    pub max_token: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza: 256 * 1024,
            max_depth: 32,
            max_token: 4096,
            max_attributes: 64,
        }
    }
}

impl Limits {
    /// Largest stream header (the opening `<stream:stream ...>` tag and what precedes it).
    pub fn max_header(&self) -> usize {
        self.max_token * 4
    }

    /// Most bytes rxml may hold before it produces an event: one element's opening tag
    /// (its attributes are kept until the tag closes) or one text chunk.
    pub fn max_pending(&self) -> usize {
        self.max_token * 4
    }
}

/// Sans-IO parser for one XML stream (reset after STARTTLS and SASL success).
pub struct StreamParser {
    parser: Parser,
    /// Reads the header a second time, raw, to see its namespace declarations (rxml's
    /// resolving parser consumes them). Dropped once the header is complete.
    sniffer: Option<RawParser>,
    limits: Limits,
    /// 0: before the header; 1: between stanzas; >1: inside a stanza.
    depth: usize,
    builder: Option<ElementFromEvents>,
    stanza_bytes: usize,
    header: StreamHeader,
    /// Bytes seen since the header started (bounds a header that never closes).
    header_bytes: usize,
    /// Bytes consumed since rxml produced its last event: rxml keeps an opening tag's
    /// attributes until the tag closes, so this bounds what it holds for us.
    pending: usize,
    /// Attributes and namespace declarations seen on the open tag (raw, by the sniffer
    /// of the header; counted from the finished element elsewhere).
    header_attributes: usize,
    /// The prefix the stream header's element name used (`stream` expected).
    header_prefix: Option<Option<String>>,
    /// The header's namespace declarations, rewritten as a minimal opening tag, so that
    /// an idle stream can drop its parser and later rebuild it (see [`Self::park`]).
    decls: Option<Box<str>>,
    failed: bool,
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        let opts = rxml::Options {
            max_token_length: limits.max_token.max(256),
            ..Default::default()
        };
        StreamParser {
            sniffer: Some(RawParser::with_options(opts.clone())),
            parser: Parser::with_options(opts),
            limits,
            depth: 0,
            builder: None,
            stanza_bytes: 0,
            header: StreamHeader::default(),
            header_bytes: 0,
            pending: 0,
            header_attributes: 0,
            header_prefix: None,
            decls: None,
            failed: false,
        }
    }

    /// When the stream sits between stanzas, give up the parser's memory and return
    /// what is needed to rebuild it: the header's declarations as an opening tag.
    /// `None` while a stanza is partly received (the parser must stay).
    pub fn park(&self) -> Option<Parked> {
        (self.depth == 1 && !self.failed).then(|| Parked(self.decls.clone().unwrap_or_default()))
    }

    /// Rebuild a parked parser: the same stream, between stanzas.
    pub fn resume(limits: Limits, parked: &Parked) -> StreamParser {
        let mut p = StreamParser::new(limits);
        let mut events = Vec::new();
        // our own well-formed tag: it cannot fail, and its header event is not news
        let _ = p.feed(parked.0.as_bytes(), &mut events);
        p.header_bytes = 0;
        p
    }

    /// True when no stanza is partially received (a safe point to drop the parser state).
    pub fn at_stanza_boundary(&self) -> bool {
        self.depth == 1
    }

    /// Feed one read from the socket. Complete events are appended to `out`; an error is
    /// final (the caller sends the stream error and closes).
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        if self.failed {
            return Err(StreamError::new(Condition::NotWellFormed));
        }
        let r = self.feed_inner(&mut data, out);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Collect the namespace declarations of the stream header from the raw events.
    fn sniff(&mut self, mut data: &[u8]) {
        let Some(raw) = self.sniffer.as_mut() else {
            return;
        };
        loop {
            match raw.parse(&mut data, false) {
                Ok(Some(RawEvent::ElementHeadOpen(_, (prefix, _)))) => {
                    self.header_prefix = Some(prefix.map(|p| p.to_string()));
                }
                Ok(Some(RawEvent::Attribute(_, (prefix, name), value))) => {
                    self.header_attributes += 1;
                    match prefix.as_ref().map(|p| p.as_str()) {
                        None if name.as_str() == "xmlns" => {
                            self.header.default_ns = Some(value.to_string())
                        }
                        Some("xmlns") => self
                            .header
                            .prefixes
                            .push((name.to_string(), value.to_string())),
                        _ => {}
                    }
                }
                Ok(Some(RawEvent::ElementHeadClose(_))) | Ok(None) | Err(EndOrError::Error(_)) => {
                    self.sniffer = None;
                    return;
                }
                Ok(Some(_)) => {}
                Err(EndOrError::NeedMoreData) => return,
            }
        }
    }

    fn feed_inner(
        &mut self,
        data: &mut &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), StreamError> {
        if self.depth == 0 {
            self.sniff(data);
            if self.header_attributes > self.limits.max_attributes {
                return Err(too_many_attributes());
            }
        }
        loop {
            let before = data.len();
            let at_header = self.depth == 0;
            let ev = self.parser.parse(data, false);
            let consumed = before - data.len();
            if at_header {
                self.header_bytes += consumed;
                if self.header_bytes > self.limits.max_header() {
                    return Err(StreamError::with_text(
                        Condition::PolicyViolation,
                        "stream header too large",
                    ));
                }
            } else {
                // Bytes still buffered inside rxml count as they arrive, so an element
                // that never ends, or an opening tag that never closes, cannot grow past
                // the bounds.
                self.pending += consumed;
                if self.depth > 1 {
                    self.stanza_bytes += consumed;
                    if self.stanza_bytes > self.limits.max_stanza {
                        return Err(too_big());
                    }
                }
                if self.pending > self.limits.max_pending() {
                    return Err(StreamError::with_text(
                        Condition::PolicyViolation,
                        "element opening tag too large",
                    ));
                }
            }
            match ev {
                Ok(Some(ev)) => {
                    self.pending = 0;
                    self.handle(ev, out)?
                }
                Ok(None) => return Ok(()),
                Err(EndOrError::NeedMoreData) => return Ok(()),
                Err(EndOrError::Error(e)) => return Err(map_xml_error(e, at_header)),
            }
        }
    }

    fn handle(&mut self, ev: Event, out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        match self.depth {
            0 => match ev {
                Event::XmlDeclaration(..) => Ok(()),
                Event::StartElement(_, (ns_name, name), attrs) => {
                    if name != "stream" {
                        return Err(StreamError::with_text(
                            Condition::NotWellFormed,
                            "expected <stream:stream>",
                        ));
                    }
                    if ns_name != ns::STREAM {
                        return Err(StreamError::new(Condition::InvalidNamespace));
                    }
                    // RFC 6120 §4.8.5, §4.9.3.2: the stream element carries the
                    // `stream` prefix (its example refuses `<foobar:stream>`).
                    if let Some(p) = &self.header_prefix
                        && p.as_deref() != Some("stream")
                    {
                        return Err(StreamError::with_text(
                            Condition::BadNamespacePrefix,
                            "the stream element must use the 'stream' prefix",
                        ));
                    }
                    for ((ans, aname), value) in attrs.into_iter() {
                        let slot = match (ans.as_str(), aname.as_str()) {
                            ("", "to") => &mut self.header.to,
                            ("", "from") => &mut self.header.from,
                            ("", "id") => &mut self.header.id,
                            ("", "version") => &mut self.header.version,
                            (ns::XML, "lang") => &mut self.header.lang,
                            _ => continue,
                        };
                        *slot = Some(value);
                    }
                    self.depth = 1;
                    self.decls = Some(opening_tag(&self.header).into());
                    out.push(StreamEvent::Header(std::mem::take(&mut self.header)));
                    Ok(())
                }
                Event::Text(_, t) if is_xml_whitespace(&t) => Ok(()),
                _ => Err(StreamError::with_text(
                    Condition::NotWellFormed,
                    "expected <stream:stream>",
                )),
            },
            1 => match ev {
                Event::StartElement(m, (ns_name, name), attrs) => {
                    if ns_name == ns::STREAM && name == "stream" {
                        return Err(StreamError::with_text(
                            Condition::NotWellFormed,
                            "nested stream header",
                        ));
                    }
                    self.stanza_bytes = m.len();
                    if self.stanza_bytes > self.limits.max_stanza {
                        return Err(too_big());
                    }
                    if attrs.len() > self.limits.max_attributes {
                        return Err(too_many_attributes());
                    }
                    self.builder = Some(ElementFromEvents::new((ns_name, name), attrs));
                    self.depth = 2;
                    Ok(())
                }
                Event::Text(_, t) if is_xml_whitespace(&t) => Ok(()),
                Event::Text(..) => Err(StreamError::with_text(
                    Condition::BadFormat,
                    "text between stanzas",
                )),
                Event::EndElement(_) => {
                    self.depth = 0;
                    out.push(StreamEvent::End);
                    Ok(())
                }
                Event::XmlDeclaration(..) => Err(StreamError::new(Condition::RestrictedXml)),
            },
            _ => {
                match &ev {
                    Event::StartElement(_, _, attrs) => {
                        self.depth += 1;
                        if self.depth - 1 > self.limits.max_depth {
                            return Err(StreamError::with_text(
                                Condition::PolicyViolation,
                                "elements nested too deep",
                            ));
                        }
                        if attrs.len() > self.limits.max_attributes {
                            return Err(too_many_attributes());
                        }
                    }
                    Event::EndElement(..) => self.depth -= 1,
                    _ => {}
                }
                let Some(builder) = self.builder.as_mut() else {
                    return Err(StreamError::new(Condition::InternalServerError));
                };
                match builder.feed(ev, &xso::Context::empty()) {
                    Ok(Some(el)) => {
                        self.builder = None;
                        out.push(StreamEvent::Stanza(el));
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(_) => Err(StreamError::new(Condition::BadFormat)),
                }
            }
        }
    }
}

/// What a parked parser keeps: the stream's opening tag with its declarations.
#[derive(Debug, Clone, Default)]
pub struct Parked(Box<str>);

/// A minimal `<stream:stream>` opening tag declaring what `h` declared.
fn opening_tag(h: &StreamHeader) -> String {
    use crate::xml_escape::escape_attr;
    let mut t = String::from("<stream:stream");
    if let Some(d) = &h.default_ns {
        t.push_str(&format!(" xmlns='{}'", escape_attr(d)));
    }
    for (p, n) in &h.prefixes {
        t.push_str(&format!(" xmlns:{p}='{}'", escape_attr(n)));
    }
    t.push('>');
    t
}

fn too_big() -> StreamError {
    StreamError::with_text(Condition::PolicyViolation, "stanza too large")
}

fn too_many_attributes() -> StreamError {
    StreamError::with_text(Condition::PolicyViolation, "too many attributes")
}

fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// The stream error RFC 6120 names for what rxml refused; `at_header` while the stream
/// header (or what precedes it) is being read.
fn map_xml_error(e: rxml::Error, at_header: bool) -> StreamError {
    use rxml::Error as E;
    match e {
        // RFC 6120 §11.6: UTF-8 only; an encoding declaration naming another one, or
        // UTF-16/32 (NUL bytes) before the header
        E::RestrictedXml("only utf-8 encoding is allowed") => {
            StreamError::with_text(Condition::UnsupportedEncoding, "only UTF-8 is allowed")
        }
        E::InvalidChar(_, 0, false) if at_header => {
            StreamError::with_text(Condition::UnsupportedEncoding, "only UTF-8 is allowed")
        }
        // a prefix used on the stream element without a declaration (§4.9.3.2)
        E::UndeclaredNamespacePrefix(_) if at_header => {
            StreamError::new(Condition::BadNamespacePrefix)
        }
        E::RestrictedXml("long name or reference") | E::RestrictedXml("event too long") => {
            StreamError::with_text(Condition::PolicyViolation, "token too long")
        }
        E::RestrictedXml(what) => StreamError::with_text(Condition::RestrictedXml, what),
        E::UndeclaredEntity => {
            StreamError::with_text(Condition::RestrictedXml, "undeclared entity")
        }
        // `<!DOCTYPE` / `<!ENTITY`: rxml reads `<!` as a broken comment or CDATA start
        E::InvalidSyntax(s) if s.contains("cdata or comment") => {
            StreamError::with_text(Condition::RestrictedXml, "DTD")
        }
        E::InvalidUtf8Byte(_) => StreamError::new(Condition::UnsupportedEncoding),
        // a character reference to a code point XML does not allow (`&#0;`) is
        // well-formed UTF-8 but not well-formed XML
        other => StreamError::with_text(Condition::NotWellFormed, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' xml:lang='en'>";

    fn parse_all(chunks: &[&[u8]]) -> (Vec<StreamEvent>, Result<(), StreamError>) {
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = p.feed(c, &mut out) {
                return (out, Err(e));
            }
        }
        (out, Ok(()))
    }

    #[test]
    fn header_and_stanzas_byte_by_byte() {
        let doc = format!(
            "{HDR}<message to='a@b'><body>hi &amp; bye</body></message> <iq type='get' id='1'/></stream:stream>"
        );
        let bytes: Vec<&[u8]> = doc.as_bytes().chunks(1).collect();
        let (evs, r) = parse_all(&bytes);
        r.expect("parses");
        assert_eq!(evs.len(), 4);
        let StreamEvent::Header(h) = &evs[0] else {
            panic!("header first")
        };
        assert_eq!(h.default_ns.as_deref(), Some("jabber:client"));
        assert_eq!(h.to.as_deref(), Some("localhost"));
        assert_eq!(h.version.as_deref(), Some("1.0"));
        assert_eq!(h.lang.as_deref(), Some("en"));
        let StreamEvent::Stanza(m) = &evs[1] else {
            panic!("stanza")
        };
        assert!(m.is("message", "jabber:client"));
        assert_eq!(
            m.get_child("body", "jabber:client").map(|b| b.text()),
            Some("hi & bye".into())
        );
        assert!(matches!(evs[3], StreamEvent::End));
    }

    fn err_of(doc: &str) -> Condition {
        let (_, r) = parse_all(&[doc.as_bytes()]);
        r.expect_err("must fail").condition
    }

    #[test]
    fn restricted_xml() {
        assert_eq!(
            err_of(&format!("{HDR}<!-- c --><message/>")),
            Condition::RestrictedXml
        );
        assert_eq!(err_of(&format!("{HDR}<?pi x?>")), Condition::RestrictedXml);
        assert_eq!(
            err_of("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream/>"),
            Condition::RestrictedXml
        );
        assert_eq!(
            err_of(&format!("{HDR}<message><body>&lol;</body></message>")),
            Condition::RestrictedXml
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(
            err_of(&format!("{HDR}<message></iq>")),
            Condition::NotWellFormed
        );
        assert_eq!(
            err_of(&format!("{HDR}<a:message/>")),
            Condition::NotWellFormed
        );
        assert_eq!(
            err_of(&format!("{HDR}<stream:stream>")),
            Condition::NotWellFormed
        );
        assert_eq!(
            err_of("<stream xmlns='jabber:client'>"),
            Condition::InvalidNamespace
        );
    }

    #[test]
    fn invalid_utf8() {
        let mut doc = HDR.as_bytes().to_vec();
        doc.extend_from_slice(b"<message><body>\xff\xfe</body></message>");
        let (_, r) = parse_all(&[&doc]);
        assert_eq!(
            r.expect_err("bad utf8").condition,
            Condition::UnsupportedEncoding
        );
    }

    #[test]
    fn size_and_depth_bounds() {
        let big = format!(
            "{HDR}<message><body>{}</body></message>",
            "x".repeat(300 * 1024)
        );
        assert_eq!(err_of(&big), Condition::PolicyViolation);
        let deep = format!("{HDR}<message>{}", "<a>".repeat(40));
        assert_eq!(err_of(&deep), Condition::PolicyViolation);
        let attr = format!("{HDR}<message to='{}'/>", "a".repeat(10_000));
        assert_eq!(err_of(&attr), Condition::PolicyViolation);
        // an element that never ends is cut off at the bound, not buffered forever
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        p.feed(HDR.as_bytes(), &mut out).expect("header");
        p.feed(b"<message><body>", &mut out).expect("open");
        let chunk = vec![b'y'; 1024];
        let mut failed = None;
        for _ in 0..400 {
            if let Err(e) = p.feed(&chunk, &mut out) {
                failed = Some(e.condition);
                break;
            }
        }
        assert_eq!(failed, Some(Condition::PolicyViolation));
    }

    #[test]
    fn many_attributes_are_refused() {
        let attrs: String = (0..100).map(|i| format!(" a{i}='x'")).collect();
        assert_eq!(
            err_of(&format!("{HDR}<message{attrs}/>")),
            Condition::PolicyViolation
        );
        assert_eq!(
            err_of(&format!("{HDR}<message><body{attrs}/></message>")),
            Condition::PolicyViolation
        );
        let hdr = HDR.replace(" to=", &format!("{attrs} to="));
        assert_eq!(err_of(&hdr), Condition::PolicyViolation);
        // a handful is fine
        let few: String = (0..10).map(|i| format!(" a{i}='x'")).collect();
        let (_, r) = parse_all(&[format!("{HDR}<message{few}/>").as_bytes()]);
        r.expect("ten attributes");
    }

    #[test]
    fn opening_tag_that_never_closes_is_bounded() {
        // rxml keeps every attribute of an open tag: it must be cut off long before the
        // stanza bound, between stanzas and inside one
        for prefix in ["<message", "<message><body"] {
            let mut p = StreamParser::new(Limits::default());
            let mut out = Vec::new();
            p.feed(HDR.as_bytes(), &mut out).expect("header");
            p.feed(prefix.as_bytes(), &mut out).expect("open");
            let mut fed = 0;
            let mut i = 0u64;
            let err = loop {
                let chunk: String = (0..64)
                    .map(|_| {
                        i += 1;
                        format!(" a{i}='{}'", "v".repeat(8))
                    })
                    .collect();
                fed += chunk.len();
                if let Err(e) = p.feed(chunk.as_bytes(), &mut out) {
                    break e;
                }
                assert!(fed < 64 * 1024, "open tag grew to {fed} bytes");
            };
            assert_eq!(err.condition, Condition::PolicyViolation);
        }
        // the stream header too
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        p.feed(
            b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'",
            &mut out,
        )
        .expect("open");
        let err = (0..100_000)
            .find_map(|i| p.feed(format!(" b{i}='xxxx'").as_bytes(), &mut out).err())
            .expect("bounded");
        assert_eq!(err.condition, Condition::PolicyViolation);
    }

    #[test]
    fn whitespace_keepalives_never_fill_a_buffer() {
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        p.feed(HDR.as_bytes(), &mut out).expect("header");
        for _ in 0..200_000 {
            p.feed(b" ", &mut out).expect("whitespace");
        }
        p.feed(b"<presence/>", &mut out).expect("presence");
        assert!(matches!(out.last(), Some(StreamEvent::Stanza(_))));
    }

    #[test]
    fn encodings_other_than_utf8() {
        assert_eq!(
            err_of("<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>"),
            Condition::UnsupportedEncoding
        );
        let utf16: Vec<u8> = HDR.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
        let (_, r) = parse_all(&[&utf16]);
        assert_eq!(
            r.expect_err("utf-16").condition,
            Condition::UnsupportedEncoding
        );
        let mut bom = vec![0xfe, 0xff];
        bom.extend_from_slice(&utf16);
        let (_, r) = parse_all(&[&bom]);
        assert_eq!(
            r.expect_err("utf-16 bom").condition,
            Condition::UnsupportedEncoding
        );
        for bad in [
            &b"\xc0\xaf"[..],        // overlong '/'
            b"\xe0\x80\xbc",         // overlong '<'
            b"\xed\xa0\x80",         // UTF-16 surrogate
            b"\xe2\x82",             // truncated, then markup
            b"\xf8\x88\x80\x80\x80", // 5-byte form
            b"\xf4\x90\x80\x80",     // above U+10FFFF
            b"\x80",                 // lone continuation byte
        ] {
            for place in ["body", "attr", "header"] {
                let mut doc = Vec::new();
                match place {
                    "body" => {
                        doc.extend_from_slice(HDR.as_bytes());
                        doc.extend_from_slice(b"<message><body>");
                        doc.extend_from_slice(bad);
                        doc.extend_from_slice(b"</body></message>");
                    }
                    "attr" => {
                        doc.extend_from_slice(HDR.as_bytes());
                        doc.extend_from_slice(b"<message id='");
                        doc.extend_from_slice(bad);
                        doc.extend_from_slice(b"'/>");
                    }
                    _ => {
                        doc.extend_from_slice(b"<stream:stream to='");
                        doc.extend_from_slice(bad);
                        doc.extend_from_slice(b"'>");
                    }
                }
                let (_, r) = parse_all(&[&doc]);
                assert_eq!(
                    r.expect_err("bad utf-8").condition,
                    Condition::UnsupportedEncoding,
                    "{bad:x?} in {place}"
                );
            }
        }
        // well-formed UTF-8 naming characters XML forbids is not-well-formed
        assert_eq!(
            err_of(&format!("{HDR}<message><body>&#0;</body></message>")),
            Condition::NotWellFormed
        );
        assert_eq!(
            err_of(&format!("{HDR}<message><body>&#x110000;</body></message>")),
            Condition::NotWellFormed
        );
        assert_eq!(
            err_of(&format!("{HDR}<message><body>\u{1}</body></message>")),
            Condition::NotWellFormed
        );
        assert_eq!(
            err_of(&format!("{HDR}<message><body>\u{fffe}</body></message>")),
            Condition::NotWellFormed
        );
    }

    #[test]
    fn stream_prefix_and_namespace() {
        let streams = "http://etherx.jabber.org/streams";
        // the stream prefix bound to another namespace
        assert_eq!(
            err_of("<stream:stream xmlns='jabber:client' xmlns:stream='urn:evil'>"),
            Condition::InvalidNamespace
        );
        // the right namespace under another prefix, or none
        assert_eq!(
            err_of(&format!(
                "<foobar:stream xmlns='jabber:client' xmlns:foobar='{streams}'>"
            )),
            Condition::BadNamespacePrefix
        );
        assert_eq!(
            err_of(&format!("<stream xmlns='{streams}'>")),
            Condition::BadNamespacePrefix
        );
        // the prefix never declared
        assert_eq!(
            err_of("<stream:stream xmlns='jabber:client' to='localhost'>"),
            Condition::BadNamespacePrefix
        );
        // the xml and xmlns prefixes cannot be rebound
        assert_eq!(
            err_of(&format!("{HDR}<message xmlns:xml='urn:evil'/>")),
            Condition::NotWellFormed
        );
        assert_eq!(
            err_of(&format!("{HDR}<message xmlns:xmlns='urn:evil'/>")),
            Condition::NotWellFormed
        );
        // a stream header mid-stream under any prefix
        assert_eq!(
            err_of(&format!("{HDR}<s:stream xmlns:s='{streams}'>")),
            Condition::NotWellFormed
        );
        // a stanza declaring the stream prefix for itself is just a stanza
        let (evs, r) = parse_all(&[format!(
            "{HDR}<message xmlns:stream='urn:evil'><stream:error/></message>"
        )
        .as_bytes()]);
        r.expect("parses");
        let StreamEvent::Stanza(m) = &evs[1] else {
            panic!("stanza")
        };
        assert!(m.has_child("error", "urn:evil"));
    }

    #[test]
    fn restricted_xml_anywhere() {
        // before the header, between stanzas, inside one
        for doc in [
            format!("<!-- c -->{HDR}"),
            "<?target data?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
                .to_string(),
            format!("{HDR}<message><!-- c --></message>"),
            format!("{HDR}<message><?pi?></message>"),
            format!("{HDR}<!DOCTYPE x>"),
            format!("{HDR}<message><body>&ext;</body></message>"),
            format!("{HDR}<message to='&ext;'/>"),
        ] {
            assert_eq!(err_of(&doc), Condition::RestrictedXml, "{doc}");
        }
        // the billion laughs never expands
        let lol = "<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>\
            <!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>\
            <lolz>&lol2;</lolz>";
        assert_eq!(err_of(lol), Condition::RestrictedXml);
    }

    #[test]
    fn prefixed_stanzas_resolve_namespaces() {
        let doc = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns:c='jabber:client' xmlns='jabber:server'><c:message/>";
        let (evs, r) = parse_all(&[doc.as_bytes()]);
        r.expect("ok");
        let StreamEvent::Header(h) = &evs[0] else {
            panic!()
        };
        assert_eq!(h.default_ns.as_deref(), Some("jabber:server"));
        assert_eq!(
            h.prefixes
                .iter()
                .find(|(p, _)| p == "c")
                .map(|(_, n)| n.as_str()),
            Some("jabber:client")
        );
        let StreamEvent::Stanza(m) = &evs[1] else {
            panic!()
        };
        assert!(m.is("message", "jabber:client"));
    }

    #[test]
    fn a_parked_stream_resumes_with_its_namespaces() {
        let hdr = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:client' xmlns:x='urn:x' to='localhost' version='1.0'>";
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        p.feed(hdr.as_bytes(), &mut out).expect("header");
        p.feed(b"<message/>", &mut out).expect("one");
        let parked = p.park().expect("between stanzas");
        drop(p);
        let mut p = StreamParser::resume(Limits::default(), &parked);
        let mut out = Vec::new();
        p.feed(b"<message><x:y/></message></stream:stream>", &mut out)
            .expect("resumed");
        assert_eq!(out.len(), 2, "no second header event: {out:?}");
        let StreamEvent::Stanza(m) = &out[0] else {
            panic!("stanza")
        };
        assert!(m.is("message", "jabber:client"));
        assert!(m.has_child("y", "urn:x"));
        assert!(matches!(out[1], StreamEvent::End));
        // mid-stanza there is nothing to park
        let mut p = StreamParser::new(Limits::default());
        p.feed(hdr.as_bytes(), &mut out).expect("header");
        p.feed(b"<message><body>", &mut out).expect("partial");
        assert!(p.park().is_none());
    }
}

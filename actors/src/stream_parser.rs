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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza: 256 * 1024,
            max_depth: 32,
            max_token: 4096,
        }
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
            failed: false,
        }
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
                Ok(Some(RawEvent::Attribute(_, (prefix, name), value))) => {
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
        }
        loop {
            let before = data.len();
            let at_header = self.depth == 0;
            let ev = self.parser.parse(data, false);
            if at_header {
                self.header_bytes += before - data.len();
                if self.header_bytes > self.limits.max_token * 4 {
                    return Err(StreamError::with_text(
                        Condition::PolicyViolation,
                        "stream header too large",
                    ));
                }
            } else if self.depth > 1 {
                // Bytes still buffered inside rxml count against the stanza as they arrive,
                // so an element that never ends cannot grow past the bound.
                self.stanza_bytes += before - data.len();
                if self.stanza_bytes > self.limits.max_stanza {
                    return Err(too_big());
                }
            }
            match ev {
                Ok(Some(ev)) => self.handle(ev, out)?,
                Ok(None) => return Ok(()),
                Err(EndOrError::NeedMoreData) => return Ok(()),
                Err(EndOrError::Error(e)) => return Err(map_xml_error(e)),
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
                match ev {
                    Event::StartElement(..) => {
                        self.depth += 1;
                        if self.depth - 1 > self.limits.max_depth {
                            return Err(StreamError::with_text(
                                Condition::PolicyViolation,
                                "elements nested too deep",
                            ));
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

fn too_big() -> StreamError {
    StreamError::with_text(Condition::PolicyViolation, "stanza too large")
}

fn is_xml_whitespace(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn map_xml_error(e: rxml::Error) -> StreamError {
    use rxml::Error as E;
    match e {
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
        E::InvalidUtf8Byte(_) | E::InvalidChar(_, _, true) => {
            StreamError::new(Condition::UnsupportedEncoding)
        }
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
}

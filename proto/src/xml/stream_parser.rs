//! Incremental (sans-IO) XMPP stream parser.
//!
//! Bytes go in as they arrive from the socket; out come the stream header, one
//! [`minidom::Element`] per top-level element (stanza or negotiation element) and the
//! stream end. rxml enforces XML well-formedness and the restricted XML profile (no
//! DTD, no processing instructions, no comments, no entities beyond the predefined five);
//! this module adds what rxml does not know: the size and depth bounds of a stanza and
//! the default namespace declared on the stream header.

use crate::ns;
use crate::stream::error::{Condition, StreamError};
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
    header: StreamHeader,
    /// rxml keeps an opening tag's attributes until the tag closes: the budget's
    /// `pending` bounds what it holds for us.
    budget: ByteBudget,
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
            header: StreamHeader::default(),
            budget: ByteBudget::default(),
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
        p.budget.header = 0;
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
            // Bytes still buffered inside rxml count as they arrive, so an element that
            // never ends, or an opening tag that never closes, cannot grow past the bounds.
            self.budget
                .charge(before - data.len(), at_header, self.depth, &self.limits)?;
            match ev {
                Ok(Some(ev)) => {
                    self.budget.pending = 0;
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
                    read_stream_element(
                        &name,
                        ns_name == ns::STREAM,
                        self.header_prefix.as_ref(),
                        attrs,
                        &mut self.header,
                    )?;
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
                    self.budget.stanza = m.len();
                    if self.budget.stanza > self.limits.max_stanza {
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
pub struct Parked(pub(crate) Box<str>);

/// A minimal `<stream:stream>` opening tag declaring what `h` declared.
pub(crate) fn opening_tag(h: &StreamHeader) -> String {
    use crate::xml::escape::escape_attr;
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

/// The stream element, checked (name, namespace, and the `stream` prefix: RFC 6120
/// §4.8.5, §4.9.3.2, whose example refuses `<foobar:stream>`), its attributes taken into
/// `header` (both parsers). `prefix`: the prefix its tag used, when known.
pub(crate) fn read_stream_element(
    name: &str,
    in_stream_ns: bool,
    prefix: Option<&Option<String>>,
    attrs: impl IntoIterator<Item = ((rxml::Namespace<'static>, rxml::NcName), String)>,
    header: &mut StreamHeader,
) -> Result<(), StreamError> {
    if name != "stream" {
        return Err(StreamError::with_text(
            Condition::NotWellFormed,
            "expected <stream:stream>",
        ));
    }
    if !in_stream_ns {
        return Err(StreamError::new(Condition::InvalidNamespace));
    }
    if let Some(p) = prefix
        && p.as_deref() != Some("stream")
    {
        return Err(StreamError::with_text(
            Condition::BadNamespacePrefix,
            "the stream element must use the 'stream' prefix",
        ));
    }
    for ((ans, aname), value) in attrs {
        let slot = match (ans.as_str(), aname.as_str()) {
            ("", "to") => &mut header.to,
            ("", "from") => &mut header.from,
            ("", "id") => &mut header.id,
            ("", "version") => &mut header.version,
            (ns::XML, "lang") => &mut header.lang,
            _ => continue,
        };
        *slot = Some(value);
    }
    Ok(())
}

/// Bytes counted against the bounds as a parser consumes them (both parsers).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ByteBudget {
    /// Since the header started (bounds a header that never closes).
    pub header: usize,
    /// Since the parser's last event (bounds an open tag or a text run it buffers).
    pub pending: usize,
    /// Of the stanza being read.
    pub stanza: usize,
}

impl ByteBudget {
    /// Count `consumed` bytes read at `depth` (`at_header`: before the header ended).
    #[inline]
    pub(crate) fn charge(
        &mut self,
        consumed: usize,
        at_header: bool,
        depth: usize,
        limits: &Limits,
    ) -> Result<(), StreamError> {
        if at_header {
            self.header += consumed;
            if self.header > limits.max_header() {
                return Err(StreamError::with_text(
                    Condition::PolicyViolation,
                    "stream header too large",
                ));
            }
            return Ok(());
        }
        self.pending += consumed;
        if depth > 1 {
            self.stanza += consumed;
            if self.stanza > limits.max_stanza {
                return Err(too_big());
            }
        }
        if self.pending > limits.max_pending() {
            return Err(StreamError::with_text(
                Condition::PolicyViolation,
                "element opening tag too large",
            ));
        }
        Ok(())
    }
}

pub(crate) fn too_big() -> StreamError {
    StreamError::with_text(Condition::PolicyViolation, "stanza too large")
}

pub(crate) fn too_many_attributes() -> StreamError {
    StreamError::with_text(Condition::PolicyViolation, "too many attributes")
}

pub(crate) fn is_xml_whitespace(s: &str) -> bool {
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
    type P = super::StreamParser;
    include!("parser_contract_tests.rs");
}

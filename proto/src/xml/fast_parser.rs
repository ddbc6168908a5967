//! Hand-written incremental (sans-IO) XMPP stream parser.
//!
//! The same contract as [`crate::xml::stream_parser::StreamParser`] (rxml + xso into minidom),
//! which stays in the tree as the reference: the same events, the same
//! [`minidom::Element`] values (down to how text is split into text nodes), and the same
//! stream error *condition* for every input, however it is split into reads. It is
//! cheaper because nothing is built that is not kept: no token or event objects, no
//! per-element namespace maps, names and attribute values decoded once into a scratch
//! buffer and turned into the element's own strings, whitespace between stanzas never
//! allocated.
//!
//! The structure follows rxml on purpose, so that the first error found in a document is
//! the same one rxml finds: a lexer (states as rxml's, with bulk loops over runs of
//! bytes), a small grammar layer (what rxml's raw parser checks per token), namespace
//! resolution at the end of each opening tag (rxml's resolver), and the stream layer
//! (what `StreamParser` adds: the header, size and depth bounds, stanzas). Where rxml
//! has a quirk, it is kept, and said so in a comment: a swap of parsers should change
//! nothing a peer can observe. The differential test (`actors/tests/fast_parser_diff.rs`)
//! holds the two to that, and lists the differences it accepts.
//!
//! Memory is bounded as in `StreamParser`: the scratch buffer and an open tag's
//! attributes grow only while bytes are consumed without an event, which the pending
//! bound (`Limits::max_pending`) or the header bound cuts off; a stanza's tree grows only
//! with its bytes (`Limits::max_stanza`).

use crate::ns;
use crate::stream::error::{Condition, StreamError};
use crate::xml::stream_parser::{
    ByteBudget, Limits, Parked, StreamEvent, StreamHeader, opening_tag, read_stream_element,
    too_big, too_many_attributes,
};
use minidom::Element;
use rxml::xml_map::Entry;
use rxml::{AttrMap, Namespace, NcName};

// ---------------------------------------------------------------------------------------
// Byte classes (rxml's `lexer::ranges`), as one table.

/// Bytes that may continue character data (not `<`, `&`, `]`, CR, or a control byte).
const TEXT: u8 = 1;
/// Bytes that may continue a CDATA section (not `]`, CR, or a control byte).
const CDATA: u8 = 2;
/// Bytes that may continue a name (ASCII name characters and every non-ASCII byte).
const NAME: u8 = 4;
/// Bytes that may continue an attribute value in `'` (not `'`, `&`, `<`, below 0x20).
const APOS: u8 = 8;
/// Bytes that may continue an attribute value in `"`.
const QUOT: u8 = 16;
const SPACE: u8 = 32;
const DIGIT: u8 = 64;
const HEX: u8 = 128;

const fn class_of(b: u8) -> u8 {
    let mut c = 0;
    let control = b < 0x09 || (b > 0x0a && b < 0x20);
    if !(b == b'\r' || b == b'&' || b == b'<' || b == b']' || control) {
        c |= TEXT;
    }
    if !(b == b'\r' || b == b']' || control) {
        c |= CDATA;
    }
    if b == b':' || b == b'-' || b == b'.' || b == b'_' || b.is_ascii_alphanumeric() || b >= 0x80 {
        c |= NAME;
    }
    if !(b < 0x20 || b == b'&' || b == b'<') {
        if b != b'\'' {
            c |= APOS;
        }
        if b != b'"' {
            c |= QUOT;
        }
    }
    if b == b' ' || b == b'\t' || b == b'\r' || b == b'\n' {
        c |= SPACE;
    }
    if b.is_ascii_digit() {
        c |= DIGIT;
    }
    if b.is_ascii_hexdigit() {
        c |= HEX;
    }
    c
}

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = class_of(i as u8);
        i += 1;
    }
    t
};

#[inline(always)]
fn is(b: u8, mask: u8) -> bool {
    CLASS[b as usize] & mask != 0
}

/// A byte XML never allows, even in a reference-free run (rxml's `is_nonchar_byte`).
#[inline]
fn is_nonchar_byte(b: u8) -> bool {
    b <= 0x08 || b == 0x0b || b == 0x0c || (0x0e..=0x1f).contains(&b)
}

fn is_xml_space(s: &[u8]) -> bool {
    s.iter().all(|&b| is(b, SPACE))
}

/// How a run of bytes ended (rxml's `read_validated_bytes`, with its exact limit rule:
/// the limit counts what the buffer already holds, and is only reported when a byte of
/// the run is waiting beyond it).
enum Run {
    /// The input ended inside the run (everything read went into the buffer).
    More,
    /// The buffer is full and the run goes on.
    Limit,
    /// The run ended at this byte, which is consumed.
    Delim(u8),
}

#[inline]
fn read_run(buf: &mut Vec<u8>, r: &mut &[u8], mask: u8, limit: usize) -> Run {
    let Some(room) = limit.checked_sub(buf.len()) else {
        return Run::Limit;
    };
    let data = *r;
    let scan = data.len().min(room);
    let mut i = 0;
    while i < scan && is(data[i], mask) {
        i += 1;
    }
    buf.extend_from_slice(&data[..i]);
    match data.get(i) {
        Some(&b) if !is(b, mask) => {
            *r = &data[i + 1..];
            Run::Delim(b)
        }
        Some(_) => {
            *r = &data[i..];
            Run::Limit
        }
        None => {
            *r = &[];
            Run::More
        }
    }
}

/// Skip whitespace: how many bytes were skipped, and the byte after them (consumed).
#[inline]
fn skip_space(r: &mut &[u8]) -> (usize, Option<u8>) {
    let data = *r;
    let mut i = 0;
    while i < data.len() && is(data[i], SPACE) {
        i += 1;
    }
    match data.get(i) {
        Some(&b) => {
            *r = &data[i + 1..];
            (i, Some(b))
        }
        None => {
            *r = &[];
            (i, None)
        }
    }
}

#[inline]
fn read_byte(r: &mut &[u8]) -> Option<u8> {
    let (&b, rest) = r.split_first()?;
    *r = rest;
    Some(b)
}

/// rxml's `validate_cdata` on text that is valid UTF-8: no control characters (other
/// than tab, LF, CR) and no U+FFFE / U+FFFF.
fn cdata_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b < 0x20 {
            if is_nonchar_byte(b) {
                return false;
            }
        } else if b == 0xef
            && s.get(i + 1) == Some(&0xbf)
            && matches!(s.get(i + 2), Some(0xbe | 0xbf))
        {
            return false;
        }
        i += 1;
    }
    true
}

/// Check a complete name token (rxml: UTF-8 first, then the Name production).
fn check_name(b: &[u8]) -> Result<(), Xe> {
    if b.is_ascii() {
        // every ASCII byte the lexer let into a name is a name character; only the
        // first one has a narrower class
        return match b.first() {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' => Ok(()),
            _ => Err(Xe::NotWellFormed("invalid name")),
        };
    }
    let s = std::str::from_utf8(b).map_err(|_| Xe::Utf8)?;
    rxml::strings::validate_name(s).map_err(|_| Xe::NotWellFormed("invalid name"))
}

/// rxml's `split_name` on a valid Name: the colon's position, if any.
fn split_name(name: &str) -> Result<Option<usize>, Xe> {
    let Some(colon) = name.find(':') else {
        return Ok(None);
    };
    if colon == 0 || colon == name.len() - 1 {
        return Err(Xe::NotWellFormed("empty name part"));
    }
    let local = &name[colon + 1..];
    if local.contains(':') {
        return Err(Xe::NotWellFormed("more than one colon in a name"));
    }
    let first_ok = match local.as_bytes()[0] {
        c if c.is_ascii() => c.is_ascii_alphabetic() || c == b'_',
        // the rest of the local part is made of name characters already
        _ => rxml::strings::validate_ncname(local).is_ok(),
    };
    if !first_ok {
        return Err(Xe::NotWellFormed("invalid local name"));
    }
    Ok(Some(colon))
}

/// The empty namespace, borrowed like rxml's `Namespace::NONE` but pointing into real
/// memory. `NONE`'s empty `&'static str` points at no memory; `AttrMap` compares
/// namespaces when it inserts, and glibc's AVX-512 `memcmp` reads from both pointers
/// under an empty mask, which costs a fault-suppression assist (~150 ns per compare on
/// the development machine's EPYC) when one of them is dangling.
fn no_namespace() -> Namespace<'static> {
    static BACKING: &str = " ";
    Namespace::from_str(&BACKING[..0])
}

// ---------------------------------------------------------------------------------------
// Errors

/// What went wrong, at the precision the stream error needs (rxml's errors, grouped as
/// `stream_parser::map_xml_error` maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Xe {
    NotWellFormed(&'static str),
    /// Bytes that are not UTF-8.
    Utf8,
    /// An XML declaration naming another encoding.
    Encoding,
    /// Comments, processing instructions, DTDs, undeclared entities, XML 1.1...
    Restricted(&'static str),
    /// A name or attribute value longer than the token bound.
    TokenTooLong,
    UndeclaredPrefix,
    /// A byte XML forbids, seen literally (a NUL before the header means UTF-16/32).
    InvalidByte(u8),
    /// The stream header has more attributes than allowed.
    HeaderAttributes,
    /// A prefix declared twice on the stream header (see `FastParser::feed_inner`).
    HeaderDupPrefix,
}

impl Xe {
    fn into_stream_error(self, at_header: bool) -> StreamError {
        match self {
            Xe::NotWellFormed(t) => StreamError::with_text(Condition::NotWellFormed, t),
            Xe::Utf8 | Xe::Encoding => {
                StreamError::with_text(Condition::UnsupportedEncoding, "only UTF-8 is allowed")
            }
            Xe::InvalidByte(0) if at_header => {
                StreamError::with_text(Condition::UnsupportedEncoding, "only UTF-8 is allowed")
            }
            Xe::InvalidByte(_) => {
                StreamError::with_text(Condition::NotWellFormed, "invalid character")
            }
            Xe::Restricted(t) => StreamError::with_text(Condition::RestrictedXml, t),
            Xe::TokenTooLong => {
                StreamError::with_text(Condition::PolicyViolation, "token too long")
            }
            Xe::UndeclaredPrefix if at_header => StreamError::new(Condition::BadNamespacePrefix),
            Xe::UndeclaredPrefix => {
                StreamError::with_text(Condition::NotWellFormed, "undeclared namespace prefix")
            }
            Xe::HeaderAttributes => too_many_attributes(),
            Xe::HeaderDupPrefix => {
                StreamError::with_text(Condition::NotWellFormed, "duplicate attribute")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lexer states (rxml's `lexer::State`, minus comment contents: a comment is an error as
// soon as `<!--` is complete, in every state).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `<name ...>`
    Head,
    /// `</name>`
    Foot,
    /// `<?xml ...?>`
    Decl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Es {
    /// Reading the element name (its first byte is in the scratch buffer for a head).
    Start,
    /// After `<?xml` and after an attribute value: whitespace must come before a name.
    SpaceRequired,
    Blank,
    /// Reading an attribute (or declaration) name.
    Name,
    /// `=` read: the token is emitted without reading.
    Eq,
    /// `>` read: the token is emitted without reading.
    Close,
    /// Inside an attribute value: the delimiter, and whether a CR was just read.
    AttVal(u8, bool),
    MaybeDeclEnd,
    MaybeHeadClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Me {
    /// `<` read.
    Initial,
    /// `<!` read.
    Bang,
    /// This many bytes of `<![CDATA[` read.
    CdataStart(u8),
    /// This many bytes of `<!--` read.
    CommentStart(u8),
    /// This many bytes of `<?xml` read.
    DeclStart(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cs {
    /// Character data.
    Initial,
    /// Inside `<![CDATA[`.
    Cdata,
    MaybeElement(Me),
    /// After the XML declaration: only whitespace, then `<`.
    Whitespace,
    /// Part of `]]>` read: inside a CDATA section or not, and how many bytes.
    MaybeCdataEnd(bool, u8),
    /// CR read, in CDATA (true) or not: CRLF and lone CR become LF.
    MaybeCrlf(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefRet {
    Text,
    AttVal(Kind, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefKind {
    Entity,
    Dec,
    Hex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lx {
    Content(Cs),
    Element(Kind, Es),
    Reference(RefRet, RefKind),
}

/// What the lexer found; names, values and text are in the scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// An attribute or declaration name (validated as a Name).
    Name,
    Eq,
    /// An attribute value (valid character data).
    AttVal,
    /// `?>`
    DeclEnd,
    /// `/>`
    HeadClose,
    /// `>` of a head or a foot.
    HfEnd,
    /// `<?xml`
    DeclStart,
    /// `<name` (validated as a Name).
    HeadStart,
    /// `</name` (validated as a Name).
    FootStart,
    /// Character data: the first n bytes of the scratch buffer (valid, never empty).
    Text(usize),
    /// `<!--`
    CommentStart,
}

enum Step {
    More,
    To(Lx, Option<Tok>),
}

// ---------------------------------------------------------------------------------------
// Grammar states (rxml's raw parser).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeclSt {
    VersionName,
    VersionEq,
    VersionValue,
    EncodingName,
    EncodingEq,
    EncodingValue,
    StandaloneName,
    StandaloneEq,
    StandaloneValue,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElSt {
    /// After the XML declaration: an element must come.
    Expected,
    AttrName,
    AttrEq,
    AttrValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ps {
    Initial,
    Decl(DeclSt),
    Element(ElSt),
    /// Inside an element.
    Content,
    /// After `</name`.
    Foot,
    /// The root element is closed: only whitespace may follow.
    End,
}

/// An attribute of the open tag: its name in `attr_names`, its decoded value.
#[derive(Debug)]
struct PendAttr {
    start: usize,
    colon: Option<usize>,
    end: usize,
    value: String,
}

/// One element's namespace scope.
#[derive(Debug)]
struct Frame {
    /// The default namespace this element declares.
    default: Option<Namespace<'static>>,
    /// Where this element's prefix declarations start in `FastParser::decls`.
    decls_start: usize,
}

/// An element whose opening tag is complete, resolved.
#[derive(Debug)]
struct Start {
    el: Element,
    /// Bytes of the opening tag, `<` to `>`.
    len: usize,
}

/// How many elements `FastParser::templates` keeps.
const TEMPLATES: usize = 16;

/// What the grammar layer hands to the stream layer (rxml's `Event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Decl,
    /// The element is in `FastParser::start`.
    Start,
    End,
    /// The first n bytes of the scratch buffer.
    Text(usize),
}

/// Sans-IO parser for one XML stream (reset after STARTTLS and SASL success); a drop-in
/// for [`crate::xml::stream_parser::StreamParser`].
#[derive(Debug)]
pub struct FastParser {
    limits: Limits,
    /// rxml's token bound (`max_token`, at least 256).
    max_token: usize,

    // lexer
    lx: Lx,
    /// The token being read: a name, an attribute value, text.
    scratch: Vec<u8>,
    /// An entity or character reference's name (at most 8 bytes).
    refbuf: Vec<u8>,
    /// Stream offset of the end of the input being fed, and of the position after the
    /// last token.
    end_abs: u64,
    cur_abs: u64,
    /// Stream offset of the last `<` that opened markup.
    lt_abs: u64,

    // grammar and namespaces
    ps: Ps,
    /// Raw names (prefix included) of the open elements, one after the other.
    open_names: String,
    open_starts: Vec<usize>,
    /// The colon in the raw name of the element whose tag is open.
    head_colon: Option<usize>,
    attr_names: String,
    /// The attribute name just read: start, colon, end in `attr_names`.
    attr_name: (usize, Option<usize>, usize),
    attrs: Vec<PendAttr>,
    head_default: Option<Namespace<'static>>,
    /// Prefix declarations in scope: prefix (in `decl_names`) and namespace.
    decls: Vec<(usize, usize, Namespace<'static>)>,
    decl_names: String,
    head_decls_start: usize,
    frames: Vec<Frame>,
    /// `/>` was read: the end event comes next, without input.
    queued_end: bool,
    start: Option<Start>,
    /// See [`no_namespace`].
    none_ns: Namespace<'static>,
    /// Recently built bare elements and their namespaces: a clone costs the name's
    /// allocation and a reference count, where building costs three allocations.
    templates: Vec<(Namespace<'static>, Element)>,
    template_next: usize,

    // stream
    /// 0: before the header; 1: between stanzas; >1: inside a stanza.
    depth: usize,
    /// The stanza being built, its open elements outermost first.
    stack: Vec<Element>,
    header: StreamHeader,
    budget: ByteBudget,
    /// Reading the root element's opening tag: its attributes are counted and its
    /// declarations kept (`StreamParser`'s sniffer).
    sniffing: bool,
    /// After a duplicate prefix on the header: only count the rest of its attributes.
    sniff_only: bool,
    header_attributes: usize,
    header_prefix: Option<Option<String>>,
    decls_tag: Option<Box<str>>,
    failed: bool,
}

impl FastParser {
    pub fn new(limits: Limits) -> Self {
        FastParser {
            limits,
            max_token: limits.max_token.max(256),
            lx: Lx::Content(Cs::Initial),
            scratch: Vec::new(),
            refbuf: Vec::new(),
            end_abs: 0,
            cur_abs: 0,
            lt_abs: 0,
            ps: Ps::Initial,
            open_names: String::new(),
            open_starts: Vec::new(),
            head_colon: None,
            attr_names: String::new(),
            attr_name: (0, None, 0),
            attrs: Vec::new(),
            head_default: None,
            decls: Vec::new(),
            decl_names: String::new(),
            head_decls_start: 0,
            frames: Vec::new(),
            queued_end: false,
            start: None,
            none_ns: no_namespace(),
            templates: Vec::new(),
            template_next: 0,
            depth: 0,
            stack: Vec::new(),
            header: StreamHeader::default(),
            budget: ByteBudget::default(),
            sniffing: true,
            sniff_only: false,
            header_attributes: 0,
            header_prefix: None,
            decls_tag: None,
            failed: false,
        }
    }

    /// When the stream sits between stanzas, give up the parser's memory and return
    /// what is needed to rebuild it: the header's declarations as an opening tag.
    /// `None` while a stanza is partly received (the parser must stay).
    pub fn park(&self) -> Option<Parked> {
        (self.depth == 1 && !self.failed)
            .then(|| Parked(self.decls_tag.clone().unwrap_or_default()))
    }

    /// Rebuild a parked parser: the same stream, between stanzas.
    pub fn resume(limits: Limits, parked: &Parked) -> FastParser {
        let mut p = FastParser::new(limits);
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

    fn feed_inner(
        &mut self,
        data: &mut &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), StreamError> {
        self.end_abs = self.end_abs.wrapping_add(data.len() as u64);
        // One round per event, as `StreamParser` runs one rxml `parse` call per event:
        // the byte bounds are checked on what each round consumed, before its event or
        // error is looked at.
        loop {
            let before = data.len();
            let at_header = self.depth == 0;
            let ev = self.next_event(data);
            self.budget
                .charge(before - data.len(), at_header, self.depth, &self.limits)?;
            match ev {
                Ok(Some(ev)) => {
                    self.budget.pending = 0;
                    let r = self.handle(ev, out);
                    if let Ev::Text(n) = ev {
                        self.scratch.drain(..n);
                    }
                    r?
                }
                Ok(None) => return Ok(()),
                Err(Xe::HeaderDupPrefix) => {
                    // `StreamParser` counts the header's attributes over the whole read
                    // (its sniffer) before parsing it: more than allowed is reported
                    // even when a duplicate declaration comes first.
                    self.sniff_only = true;
                    self.scratch.clear();
                    self.ps = Ps::Element(ElSt::AttrName);
                    if let Err(Xe::HeaderAttributes) = self.next_event(data) {
                        return Err(too_many_attributes());
                    }
                    return Err(Xe::HeaderDupPrefix.into_stream_error(at_header));
                }
                Err(e) => return Err(e.into_stream_error(at_header)),
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Stream layer (what `StreamParser::handle` does with rxml's events).

    fn handle(&mut self, ev: Ev, out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        match self.depth {
            0 => match ev {
                Ev::Decl => Ok(()),
                Ev::Start => {
                    let Some(Start { mut el, .. }) = self.start.take() else {
                        return Err(StreamError::new(Condition::InternalServerError));
                    };
                    let attrs = std::mem::take(el.attrs_mut());
                    read_stream_element(
                        el.name(),
                        el.has_ns(ns::STREAM),
                        self.header_prefix.as_ref(),
                        attrs,
                        &mut self.header,
                    )?;
                    self.depth = 1;
                    self.decls_tag = Some(opening_tag(&self.header).into());
                    out.push(StreamEvent::Header(std::mem::take(&mut self.header)));
                    Ok(())
                }
                Ev::Text(n) if is_xml_space(&self.scratch[..n]) => Ok(()),
                _ => Err(StreamError::with_text(
                    Condition::NotWellFormed,
                    "expected <stream:stream>",
                )),
            },
            1 => match ev {
                Ev::Start => {
                    let Some(s) = self.start.take() else {
                        return Err(StreamError::new(Condition::InternalServerError));
                    };
                    if s.el.name() == "stream" && s.el.has_ns(ns::STREAM) {
                        return Err(StreamError::with_text(
                            Condition::NotWellFormed,
                            "nested stream header",
                        ));
                    }
                    self.budget.stanza = s.len;
                    if self.budget.stanza > self.limits.max_stanza {
                        return Err(too_big());
                    }
                    if s.el.attrs().len() > self.limits.max_attributes {
                        return Err(too_many_attributes());
                    }
                    self.stack.push(s.el);
                    self.depth = 2;
                    Ok(())
                }
                Ev::Text(n) if is_xml_space(&self.scratch[..n]) => Ok(()),
                Ev::Text(_) => Err(StreamError::with_text(
                    Condition::BadFormat,
                    "text between stanzas",
                )),
                Ev::End => {
                    self.depth = 0;
                    out.push(StreamEvent::End);
                    Ok(())
                }
                Ev::Decl => Err(StreamError::new(Condition::RestrictedXml)),
            },
            _ => match ev {
                Ev::Start => {
                    self.depth += 1;
                    if self.depth - 1 > self.limits.max_depth {
                        return Err(StreamError::with_text(
                            Condition::PolicyViolation,
                            "elements nested too deep",
                        ));
                    }
                    let Some(s) = self.start.take() else {
                        return Err(StreamError::new(Condition::InternalServerError));
                    };
                    if s.el.attrs().len() > self.limits.max_attributes {
                        return Err(too_many_attributes());
                    }
                    self.stack.push(s.el);
                    Ok(())
                }
                Ev::End => {
                    self.depth -= 1;
                    let Some(el) = self.stack.pop() else {
                        return Err(StreamError::new(Condition::InternalServerError));
                    };
                    match self.stack.last_mut() {
                        Some(parent) => {
                            parent.append_child(el);
                        }
                        None => out.push(StreamEvent::Stanza(el)),
                    }
                    Ok(())
                }
                Ev::Text(n) => {
                    let Some(top) = self.stack.last_mut() else {
                        return Err(StreamError::new(Condition::InternalServerError));
                    };
                    // the lexer validated these bytes as UTF-8 character data
                    let Ok(text) = std::str::from_utf8(&self.scratch[..n]) else {
                        return Err(StreamError::new(Condition::InternalServerError));
                    };
                    top.append_text_node(text.to_owned());
                    Ok(())
                }
                Ev::Decl => Ok(()),
            },
        }
    }

    // -----------------------------------------------------------------------------------
    // Grammar layer (rxml's raw parser and namespace resolver).

    fn next_event(&mut self, r: &mut &[u8]) -> Result<Option<Ev>, Xe> {
        if self.queued_end {
            self.queued_end = false;
            self.pop_frame();
            return Ok(Some(Ev::End));
        }
        loop {
            let Some(tok) = self.lex(r)? else {
                return Ok(None);
            };
            if let Some(ev) = self.on_token(tok)? {
                return Ok(Some(ev));
            }
        }
    }

    fn on_token(&mut self, tok: Tok) -> Result<Option<Ev>, Xe> {
        match self.ps {
            Ps::Initial => match tok {
                Tok::DeclStart => {
                    self.ps = Ps::Decl(DeclSt::VersionName);
                    Ok(None)
                }
                Tok::HeadStart => {
                    self.open_element()?;
                    Ok(None)
                }
                Tok::CommentStart => Err(Xe::Restricted("comments")),
                _ => Err(Xe::NotWellFormed("unexpected token at the start")),
            },
            Ps::Decl(st) => self.on_decl(st, tok),
            Ps::Element(st) => self.on_element(st, tok),
            Ps::Content => match tok {
                Tok::Text(n) => Ok(Some(Ev::Text(n))),
                Tok::HeadStart => {
                    self.open_element()?;
                    Ok(None)
                }
                Tok::FootStart => {
                    let top = self
                        .open_starts
                        .last()
                        .map_or("", |&s| &self.open_names[s..]);
                    if top.as_bytes() != self.scratch.as_slice() {
                        return Err(Xe::NotWellFormed("start and end tag do not match"));
                    }
                    self.scratch.clear();
                    self.ps = Ps::Foot;
                    Ok(None)
                }
                Tok::DeclStart => Err(Xe::Restricted("processing instructions")),
                Tok::CommentStart => Err(Xe::Restricted("comments")),
                _ => Err(Xe::NotWellFormed("unexpected token in text")),
            },
            Ps::Foot => match tok {
                Tok::HfEnd => {
                    self.pop_element();
                    self.pop_frame();
                    Ok(Some(Ev::End))
                }
                _ => Err(Xe::NotWellFormed("unexpected token in an end tag")),
            },
            Ps::End => match tok {
                // whitespace after the root element is allowed
                Tok::Text(n) if is_xml_space(&self.scratch[..n]) => {
                    self.scratch.drain(..n);
                    Ok(None)
                }
                _ => Err(Xe::NotWellFormed("data after the end of the stream")),
            },
        }
    }

    fn on_decl(&mut self, st: DeclSt, tok: Tok) -> Result<Option<Ev>, Xe> {
        use DeclSt::*;
        let bad = Xe::NotWellFormed("malformed XML declaration");
        let next = match tok {
            Tok::Name => {
                let name = self.scratch.as_slice();
                let next = match (st, name) {
                    (VersionName, b"version") => VersionEq,
                    (EncodingName, b"encoding") => EncodingEq,
                    (StandaloneName, b"standalone") => StandaloneEq,
                    _ => return Err(bad),
                };
                self.scratch.clear();
                next
            }
            Tok::Eq => match st {
                VersionEq => VersionValue,
                EncodingEq => EncodingValue,
                StandaloneEq => StandaloneValue,
                _ => return Err(bad),
            },
            Tok::AttVal => {
                let v = self.scratch.as_slice();
                let next = match st {
                    VersionValue if v == b"1.0" => EncodingName,
                    VersionValue => return Err(Xe::Restricted("only XML version 1.0 is allowed")),
                    EncodingValue if v.eq_ignore_ascii_case(b"utf-8") => StandaloneName,
                    EncodingValue => return Err(Xe::Encoding),
                    StandaloneValue if v.eq_ignore_ascii_case(b"yes") => Close,
                    StandaloneValue => {
                        return Err(Xe::Restricted("only standalone documents are allowed"));
                    }
                    _ => return Err(bad),
                };
                self.scratch.clear();
                next
            }
            Tok::DeclEnd => {
                return match st {
                    EncodingName | StandaloneName | Close => {
                        self.ps = Ps::Element(ElSt::Expected);
                        Ok(Some(Ev::Decl))
                    }
                    _ => Err(bad),
                };
            }
            _ => return Err(bad),
        };
        self.ps = Ps::Decl(next);
        Ok(None)
    }

    fn on_element(&mut self, st: ElSt, tok: Tok) -> Result<Option<Ev>, Xe> {
        let bad = Xe::NotWellFormed("unexpected token in an element");
        match tok {
            Tok::DeclStart if st == ElSt::Expected => {
                Err(Xe::Restricted("processing instructions"))
            }
            Tok::HeadStart if st == ElSt::Expected => {
                self.open_element()?;
                Ok(None)
            }
            Tok::CommentStart if st == ElSt::Expected => Err(Xe::Restricted("comments")),
            Tok::HfEnd | Tok::HeadClose if st == ElSt::AttrName => {
                if self.sniff_only {
                    // the sniffer stops at the end of the header's opening tag
                    return Err(Xe::NotWellFormed("duplicate attribute"));
                }
                self.sniffing = false;
                self.finish_element()?;
                if tok == Tok::HeadClose {
                    self.pop_element();
                    self.queued_end = true;
                } else {
                    self.ps = Ps::Content;
                }
                Ok(Some(Ev::Start))
            }
            Tok::Name if st == ElSt::AttrName => {
                let name = std::str::from_utf8(&self.scratch).map_err(|_| Xe::Utf8)?;
                let colon = split_name(name)?;
                if let Some(c) = colon
                    && &name[..c] == "xmlns"
                    && &name[c + 1..] == "xmlns"
                {
                    return Err(Xe::NotWellFormed("reserved namespace prefix"));
                }
                let start = self.attr_names.len();
                self.attr_names.push_str(name);
                self.attr_name = (start, colon.map(|c| start + c), self.attr_names.len());
                self.scratch.clear();
                self.ps = Ps::Element(ElSt::AttrEq);
                Ok(None)
            }
            Tok::Eq if st == ElSt::AttrEq => {
                self.ps = Ps::Element(ElSt::AttrValue);
                Ok(None)
            }
            Tok::AttVal if st == ElSt::AttrValue => {
                self.attribute()?;
                self.scratch.clear();
                self.ps = Ps::Element(ElSt::AttrName);
                Ok(None)
            }
            _ => Err(bad),
        }
    }

    /// `<name` read: the element is open (rxml: `start_processing_element`).
    fn open_element(&mut self) -> Result<(), Xe> {
        let name = std::str::from_utf8(&self.scratch).map_err(|_| Xe::Utf8)?;
        let start = self.open_names.len();
        self.open_names.push_str(name);
        self.open_starts.push(start);
        let colon = split_name(name)?;
        self.head_colon = colon;
        if self.sniffing {
            self.header_prefix = Some(colon.map(|c| name[..c].to_owned()));
        }
        self.scratch.clear();
        self.attr_names.clear();
        self.attrs.clear();
        self.head_default = None;
        self.head_decls_start = self.decls.len();
        self.ps = Ps::Element(ElSt::AttrName);
        Ok(())
    }

    /// An attribute is complete: name in `attr_name`, value in the scratch buffer.
    fn attribute(&mut self) -> Result<(), Xe> {
        let (start, colon, end) = self.attr_name;
        let (prefix, local) = match colon {
            Some(c) => (
                Some(&self.attr_names[start..c]),
                &self.attr_names[c + 1..end],
            ),
            None => (None, &self.attr_names[start..end]),
        };
        // the lexer validated the value as UTF-8 character data
        let value = std::str::from_utf8(&self.scratch).map_err(|_| Xe::Utf8)?;
        // Namespaces in XML 1.0: reserved prefixes and names, no prefix undeclaring
        let reserved = Xe::NotWellFormed("reserved namespace prefix or name");
        match prefix {
            Some("xmlns") => {
                if local == "xml" {
                    if value != ns::XML {
                        return Err(reserved);
                    }
                } else if value == ns::XML {
                    return Err(reserved);
                }
                if value.is_empty() {
                    return Err(Xe::NotWellFormed("empty namespace name"));
                }
            }
            None if local == "xmlns" && value == ns::XML => return Err(reserved),
            _ => {}
        }
        if self.sniffing {
            self.header_attributes += 1;
            match prefix {
                None if local == "xmlns" => self.header.default_ns = Some(value.to_owned()),
                Some("xmlns") => self
                    .header
                    .prefixes
                    .push((local.to_owned(), value.to_owned())),
                _ => {}
            }
            if self.header_attributes > self.limits.max_attributes {
                return Err(Xe::HeaderAttributes);
            }
        }
        if self.sniff_only {
            return Ok(());
        }
        match prefix {
            Some("xmlns") => {
                let dup = self.decls[self.head_decls_start..]
                    .iter()
                    .any(|&(s, e, _)| &self.decl_names[s..e] == local);
                if dup {
                    return Err(if self.sniffing {
                        Xe::HeaderDupPrefix
                    } else {
                        Xe::NotWellFormed("duplicate attribute")
                    });
                }
                let ns = self.intern(value);
                let s = self.decl_names.len();
                self.decl_names.push_str(local);
                self.decls.push((s, self.decl_names.len(), ns));
            }
            // rxml keeps the last of several `xmlns` attributes (no duplicate check)
            None if local == "xmlns" => self.head_default = Some(self.intern(value)),
            _ => self.attrs.push(PendAttr {
                start,
                colon,
                end,
                value: value.to_owned(),
            }),
        }
        Ok(())
    }

    fn lookup(&self, prefix: &str) -> Result<Namespace<'static>, Xe> {
        if prefix == "xml" {
            return Ok(Namespace::XML);
        }
        self.decls
            .iter()
            .rev()
            .find(|&&(s, e, _)| &self.decl_names[s..e] == prefix)
            .map(|(_, _, ns)| ns.clone())
            .ok_or(Xe::UndeclaredPrefix)
    }

    /// The opening tag is complete: resolve its namespaces (rxml: `finish_element`).
    fn finish_element(&mut self) -> Result<(), Xe> {
        self.frames.push(Frame {
            default: self.head_default.take(),
            decls_start: self.head_decls_start,
        });
        let mut attrs = AttrMap::new();
        let mut pending = std::mem::take(&mut self.attrs);
        for a in pending.drain(..) {
            let (ns, local) = match a.colon {
                Some(c) => (
                    self.lookup(&self.attr_names[a.start..c])?,
                    &self.attr_names[c + 1..a.end],
                ),
                None => (self.none_ns.clone(), &self.attr_names[a.start..a.end]),
            };
            let name = NcName::try_from(local).map_err(|_| Xe::NotWellFormed("invalid name"))?;
            match attrs.entry(ns, name) {
                Entry::Occupied(_) => return Err(Xe::NotWellFormed("duplicate attribute")),
                Entry::Vacant(e) => {
                    e.insert(a.value);
                }
            }
        }
        self.attrs = pending;
        let start = self.open_starts.last().copied().unwrap_or(0);
        let mut el = match self.head_colon {
            Some(c) => {
                let ns = self.lookup(&self.open_names[start..start + c])?;
                self.bare_element(None, Some(ns), start + c + 1)
            }
            None => {
                let at = self.frames.iter().rposition(|f| f.default.is_some());
                self.bare_element(at, None, start)
            }
        };
        *el.attrs_mut() = attrs;
        self.start = Some(Start {
            el,
            len: self.cur_abs.wrapping_sub(self.lt_abs) as usize,
        });
        Ok(())
    }

    /// The namespace named `value`: rxml's static ones, else one a template already
    /// holds (a reference count, not an allocation, for the declarations a stream's
    /// stanzas repeat), else a new one.
    fn intern(&self, value: &str) -> Namespace<'static> {
        if let Some(ns) = Namespace::try_share_static(value) {
            return ns;
        }
        match self.templates.iter().find(|(ns, _)| &**ns == value) {
            Some((ns, _)) => ns.clone(),
            None => Namespace::from(value.to_owned()),
        }
    }

    /// A bare element named `open_names[name_at..]`, from a template if one fits; in the
    /// namespace `ns`, or else the default one of `frames[frame]` (none without a frame).
    fn bare_element(
        &mut self,
        frame: Option<usize>,
        ns: Option<Namespace<'static>>,
        name_at: usize,
    ) -> Element {
        let ns = match (&ns, frame) {
            (Some(ns), _) => ns,
            (None, Some(i)) => self.frames[i].default.as_ref().unwrap_or(&self.none_ns),
            (None, None) => &self.none_ns,
        };
        let name = &self.open_names[name_at..];
        // lengths first: an empty string's bytes are not compared
        let same_ns = |t: &Namespace<'static>| t.len() == ns.len() && (ns.is_empty() || t == ns);
        if let Some((_, t)) = self
            .templates
            .iter()
            .find(|(tns, t)| t.name() == name && same_ns(tns))
        {
            return t.clone();
        }
        // (never a dangling pointer, even for the empty namespace: see `none_ns`)
        let mut ns_name = String::with_capacity(ns.len().max(1));
        ns_name.push_str(ns);
        let el = Element::bare(name, ns_name);
        let ns = ns.clone();
        if self.templates.len() < TEMPLATES {
            self.templates.push((ns, el.clone()));
        } else {
            self.templates[self.template_next] = (ns, el.clone());
            self.template_next = (self.template_next + 1) % TEMPLATES;
        }
        el
    }

    /// The element is closed (raw names).
    fn pop_element(&mut self) {
        if let Some(s) = self.open_starts.pop() {
            self.open_names.truncate(s);
        }
        self.ps = if self.open_starts.is_empty() {
            Ps::End
        } else {
            Ps::Content
        };
    }

    /// The element is closed (namespace scope).
    fn pop_frame(&mut self) {
        if let Some(f) = self.frames.pop() {
            if let Some(&(s, _, _)) = self.decls.get(f.decls_start) {
                self.decl_names.truncate(s);
            }
            self.decls.truncate(f.decls_start);
        }
    }

    // -----------------------------------------------------------------------------------
    // Lexer (rxml's `Lexer`, state for state).

    fn lex(&mut self, r: &mut &[u8]) -> Result<Option<Tok>, Xe> {
        loop {
            let step = match self.lx {
                Lx::Content(cs) => self.lex_content(cs, r)?,
                Lx::Element(kind, es) => self.lex_element(kind, es, r)?,
                Lx::Reference(ret, kind) => self.lex_reference(ret, kind, r)?,
            };
            match step {
                Step::More => return Ok(None),
                Step::To(lx, tok) => {
                    self.lx = lx;
                    if tok.is_some() {
                        self.cur_abs = self.end_abs.wrapping_sub(r.len() as u64);
                        return Ok(tok);
                    }
                }
            }
        }
    }

    /// The scratch buffer as a text token, if it holds anything. `complete`: it must all
    /// be valid; otherwise a valid prefix is enough (a character may be cut at a bound).
    fn flush_text(&mut self, complete: bool) -> Result<Option<Tok>, Xe> {
        if self.scratch.is_empty() {
            return Ok(None);
        }
        let n = match std::str::from_utf8(&self.scratch) {
            Ok(_) => self.scratch.len(),
            Err(_) if complete => return Err(Xe::Utf8),
            Err(e) if e.valid_up_to() == 0 => return Err(Xe::Utf8),
            Err(e) => e.valid_up_to(),
        };
        if !cdata_ok(&self.scratch[..n]) {
            return Err(Xe::NotWellFormed("invalid character"));
        }
        Ok(Some(Tok::Text(n)))
    }

    /// rxml's `flush_limited_scratchpad_as_text`.
    fn flush_full_text(&mut self) -> Result<Option<Tok>, Xe> {
        if self.scratch.len() >= self.max_token {
            self.flush_text(false)
        } else {
            Ok(None)
        }
    }

    /// A byte that ended a text run.
    fn after_text(&mut self, b: u8, r: &[u8]) -> Result<Option<Step>, Xe> {
        Ok(Some(match b {
            b'<' => {
                self.lt_abs = self.end_abs.wrapping_sub(r.len() as u64 + 1);
                let tok = self.flush_text(true)?;
                Step::To(Lx::Content(Cs::MaybeElement(Me::Initial)), tok)
            }
            // perhaps the start of `]]>`, which text may not contain
            b']' => Step::To(Lx::Content(Cs::MaybeCdataEnd(false, 1)), None),
            b'&' => {
                let tok = self.flush_text(true)?;
                self.refbuf.clear();
                Step::To(Lx::Reference(RefRet::Text, RefKind::Entity), tok)
            }
            b'\r' => Step::To(Lx::Content(Cs::MaybeCrlf(false)), None),
            _ => return Ok(None),
        }))
    }

    /// rxml's `lex_resume_text`: one byte of text after a lookahead.
    fn resume_text(&mut self, b: u8, r: &[u8]) -> Result<Step, Xe> {
        if let Some(step) = self.after_text(b, r)? {
            return Ok(step);
        }
        if is_nonchar_byte(b) {
            return Err(Xe::InvalidByte(b));
        }
        self.scratch.push(b);
        Ok(Step::To(Lx::Content(Cs::Initial), None))
    }

    fn lex_content(&mut self, cs: Cs, r: &mut &[u8]) -> Result<Step, Xe> {
        match cs {
            Cs::Initial => match read_run(&mut self.scratch, r, TEXT, self.max_token) {
                Run::More => Ok(Step::More),
                Run::Limit => Ok(Step::To(Lx::Content(Cs::Initial), self.flush_text(false)?)),
                Run::Delim(b) => match self.after_text(b, r)? {
                    Some(step) => Ok(step),
                    None => Err(Xe::InvalidByte(b)),
                },
            },
            Cs::Cdata => match read_run(&mut self.scratch, r, CDATA, self.max_token) {
                Run::More => Ok(Step::More),
                Run::Limit => Ok(Step::To(Lx::Content(Cs::Cdata), self.flush_text(false)?)),
                Run::Delim(b']') => Ok(Step::To(Lx::Content(Cs::MaybeCdataEnd(true, 1)), None)),
                Run::Delim(b'\r') => Ok(Step::To(Lx::Content(Cs::MaybeCrlf(true)), None)),
                Run::Delim(b) => Err(Xe::InvalidByte(b)),
            },
            Cs::Whitespace => match skip_space(r) {
                (_, None) => Ok(Step::More),
                (_, Some(b'<')) => {
                    self.lt_abs = self.end_abs.wrapping_sub(r.len() as u64 + 1);
                    Ok(Step::To(Lx::Content(Cs::MaybeElement(Me::Initial)), None))
                }
                (_, Some(_)) => Err(Xe::NotWellFormed("text after the XML declaration")),
            },
            Cs::MaybeElement(me) => self.lex_maybe_element(me, r),
            Cs::MaybeCdataEnd(in_cdata, nend) => {
                let Some(b) = read_byte(r) else {
                    return Ok(Step::More);
                };
                if b == b"]]>"[nend as usize] {
                    if nend == 1 {
                        return Ok(Step::To(Lx::Content(Cs::MaybeCdataEnd(in_cdata, 2)), None));
                    }
                    if !in_cdata {
                        return Err(Xe::NotWellFormed("unescaped ']]>' in text"));
                    }
                    return Ok(Step::To(Lx::Content(Cs::Initial), self.flush_text(true)?));
                }
                if b == b']' {
                    // `]]]`: the first one was text
                    self.scratch.push(b']');
                    let tok = self.flush_full_text()?;
                    return Ok(Step::To(
                        Lx::Content(Cs::MaybeCdataEnd(in_cdata, nend)),
                        tok,
                    ));
                }
                self.scratch.extend_from_slice(&b"]]"[..nend as usize]);
                if !in_cdata {
                    return self.resume_text(b, r);
                }
                if is_nonchar_byte(b) {
                    return Err(Xe::InvalidByte(b));
                }
                self.scratch.push(b);
                let tok = self.flush_full_text()?;
                Ok(Step::To(Lx::Content(Cs::Cdata), tok))
            }
            Cs::MaybeCrlf(in_cdata) => {
                let Some(b) = read_byte(r) else {
                    return Ok(Step::More);
                };
                let back = if in_cdata { Cs::Cdata } else { Cs::Initial };
                self.scratch.push(b'\n');
                match b {
                    b'\n' => Ok(Step::To(Lx::Content(back), None)),
                    // the first CR is a line end; the second may start a CRLF
                    b'\r' => Ok(Step::To(Lx::Content(Cs::MaybeCrlf(in_cdata)), None)),
                    _ if !in_cdata => self.resume_text(b, r),
                    b']' => Ok(Step::To(Lx::Content(Cs::MaybeCdataEnd(true, 1)), None)),
                    _ if is_nonchar_byte(b) => Err(Xe::InvalidByte(b)),
                    _ => {
                        self.scratch.push(b);
                        Ok(Step::To(Lx::Content(Cs::Cdata), None))
                    }
                }
            }
        }
    }

    fn lex_maybe_element(&mut self, me: Me, r: &mut &[u8]) -> Result<Step, Xe> {
        let Some(b) = read_byte(r) else {
            return Ok(Step::More);
        };
        match me {
            Me::Initial => match b {
                b'?' => Ok(Step::To(
                    Lx::Content(Cs::MaybeElement(Me::DeclStart(2))),
                    None,
                )),
                b'!' => Ok(Step::To(Lx::Content(Cs::MaybeElement(Me::Bang)), None)),
                b'/' => Ok(Step::To(Lx::Element(Kind::Foot, Es::Start), None)),
                b if is(b, NAME) => {
                    self.scratch.push(b);
                    Ok(Step::To(Lx::Element(Kind::Head, Es::Start), None))
                }
                _ => Err(Xe::NotWellFormed("invalid byte after '<'")),
            },
            Me::DeclStart(i) => {
                // `<?` followed by anything but `xml` is a processing instruction
                if b != b"<?xml"[i as usize] {
                    return Err(Xe::Restricted("processing instructions"));
                }
                if i + 1 == 5 {
                    Ok(Step::To(
                        Lx::Element(Kind::Decl, Es::SpaceRequired),
                        Some(Tok::DeclStart),
                    ))
                } else {
                    Ok(Step::To(
                        Lx::Content(Cs::MaybeElement(Me::DeclStart(i + 1))),
                        None,
                    ))
                }
            }
            Me::Bang => match b {
                b'-' => Ok(Step::To(
                    Lx::Content(Cs::MaybeElement(Me::CommentStart(3))),
                    None,
                )),
                b'[' => Ok(Step::To(
                    Lx::Content(Cs::MaybeElement(Me::CdataStart(3))),
                    None,
                )),
                // `<!DOCTYPE`, `<!ENTITY`: rxml reads them as a broken comment or CDATA
                // start, which `StreamParser` reports as restricted XML (a DTD)
                _ => Err(Xe::Restricted("DTD")),
            },
            Me::CdataStart(i) => {
                if b != b"<![CDATA["[i as usize] {
                    return Err(Xe::NotWellFormed("malformed CDATA section start"));
                }
                if i + 1 == 9 {
                    Ok(Step::To(Lx::Content(Cs::Cdata), self.flush_text(true)?))
                } else {
                    Ok(Step::To(
                        Lx::Content(Cs::MaybeElement(Me::CdataStart(i + 1))),
                        None,
                    ))
                }
            }
            Me::CommentStart(i) => {
                if b != b"<!--"[i as usize] {
                    return Err(Xe::NotWellFormed("malformed comment start"));
                }
                if i + 1 == 4 {
                    // every state refuses a comment; what follows is never read
                    Ok(Step::To(Lx::Content(Cs::Initial), Some(Tok::CommentStart)))
                } else {
                    Ok(Step::To(
                        Lx::Content(Cs::MaybeElement(Me::CommentStart(i + 1))),
                        None,
                    ))
                }
            }
        }
    }

    /// rxml's `lex_element_postblank`: what a byte after a name or blank starts.
    fn after_blank(&mut self, kind: Kind, b: u8) -> Result<Es, Xe> {
        let bad = Xe::NotWellFormed("unexpected byte in a tag");
        Ok(match b {
            b' ' | b'\t' | b'\r' | b'\n' => Es::Blank,
            b'"' | b'\'' => Es::AttVal(b, false),
            b'=' => Es::Eq,
            b'>' if kind != Kind::Decl => Es::Close,
            b'?' if kind == Kind::Decl => Es::MaybeDeclEnd,
            b'/' if kind == Kind::Head => Es::MaybeHeadClose,
            b if is(b, NAME) => {
                self.scratch.push(b);
                Es::Name
            }
            _ => return Err(bad),
        })
    }

    fn lex_element(&mut self, kind: Kind, es: Es, r: &mut &[u8]) -> Result<Step, Xe> {
        match es {
            Es::Start | Es::Name => match read_run(&mut self.scratch, r, NAME, self.max_token) {
                Run::More => Ok(Step::More),
                Run::Limit => Err(Xe::TokenTooLong),
                Run::Delim(b) => {
                    // the byte after the name is checked before the name itself
                    let next = self.after_blank(kind, b)?;
                    check_name(&self.scratch)?;
                    let tok = match (es, kind) {
                        (Es::Name, _) => Tok::Name,
                        (_, Kind::Head) => Tok::HeadStart,
                        _ => Tok::FootStart,
                    };
                    Ok(Step::To(Lx::Element(kind, next), Some(tok)))
                }
            },
            Es::SpaceRequired | Es::Blank => match skip_space(r) {
                (n, None) if n > 0 && es == Es::SpaceRequired => {
                    Ok(Step::To(Lx::Element(kind, Es::Blank), None))
                }
                (_, None) => Ok(Step::More),
                (n, Some(b)) => {
                    let next = self.after_blank(kind, b)?;
                    if next == Es::Name && es == Es::SpaceRequired && n == 0 {
                        return Err(Xe::NotWellFormed("space required before attribute names"));
                    }
                    Ok(Step::To(Lx::Element(kind, next), None))
                }
            },
            Es::AttVal(delim, false) => {
                let mask = if delim == b'\'' { APOS } else { QUOT };
                match read_run(&mut self.scratch, r, mask, self.max_token) {
                    Run::More => Ok(Step::More),
                    Run::Limit => Err(Xe::TokenTooLong),
                    Run::Delim(b) => self.attval_next(kind, delim, b),
                }
            }
            Es::AttVal(delim, true) => {
                let Some(b) = read_byte(r) else {
                    return Ok(Step::More);
                };
                if b == b'\r' {
                    self.scratch.push(b' ');
                    Ok(Step::To(Lx::Element(kind, Es::AttVal(delim, true)), None))
                } else {
                    self.attval_next(kind, delim, b)
                }
            }
            Es::MaybeDeclEnd => match read_byte(r) {
                None => Ok(Step::More),
                Some(b'>') => Ok(Step::To(Lx::Content(Cs::Whitespace), Some(Tok::DeclEnd))),
                Some(_) => Err(Xe::NotWellFormed("expected '>' after '?'")),
            },
            Es::MaybeHeadClose => match read_byte(r) {
                None => Ok(Step::More),
                Some(b'>') => Ok(Step::To(Lx::Content(Cs::Initial), Some(Tok::HeadClose))),
                Some(_) => Err(Xe::NotWellFormed("expected '>' after '/'")),
            },
            Es::Eq => Ok(Step::To(Lx::Element(kind, Es::Blank), Some(Tok::Eq))),
            Es::Close => Ok(Step::To(Lx::Content(Cs::Initial), Some(Tok::HfEnd))),
        }
    }

    /// rxml's `lex_attval_next`: a byte that ended a run of attribute value bytes.
    ///
    /// rxml quirk, kept: after a CR only CR, tab, LF, `&` or the delimiter may follow
    /// (anything else is refused), and a CR right before `&` or the closing delimiter
    /// is dropped rather than read as a space.
    fn attval_next(&mut self, kind: Kind, delim: u8, b: u8) -> Result<Step, Xe> {
        match b {
            b'<' => Err(Xe::NotWellFormed("'<' in an attribute value")),
            b'&' => {
                self.refbuf.clear();
                Ok(Step::To(
                    Lx::Reference(RefRet::AttVal(kind, delim), RefKind::Entity),
                    None,
                ))
            }
            b'\t' | b'\n' => {
                self.scratch.push(b' ');
                Ok(Step::To(Lx::Element(kind, Es::AttVal(delim, false)), None))
            }
            b'\r' => Ok(Step::To(Lx::Element(kind, Es::AttVal(delim, true)), None)),
            d if d == delim => {
                if std::str::from_utf8(&self.scratch).is_err() {
                    return Err(Xe::Utf8);
                }
                if !cdata_ok(&self.scratch) {
                    return Err(Xe::NotWellFormed("invalid character"));
                }
                Ok(Step::To(
                    Lx::Element(kind, Es::SpaceRequired),
                    Some(Tok::AttVal),
                ))
            }
            other => Err(Xe::InvalidByte(other)),
        }
    }

    fn lex_reference(&mut self, ret: RefRet, kind: RefKind, r: &mut &[u8]) -> Result<Step, Xe> {
        let mask = match kind {
            RefKind::Entity => NAME,
            RefKind::Dec => DIGIT,
            RefKind::Hex => HEX,
        };
        let bad = Xe::NotWellFormed("malformed reference");
        // longer than any reference XML predefines (`&#x10FFFF;` has 6 digits): rxml
        // treats it as an undeclared entity
        let b = match read_run(&mut self.refbuf, r, mask, 8) {
            Run::More => return Ok(Step::More),
            Run::Limit => return Err(Xe::Restricted("undeclared entity")),
            Run::Delim(b) => b,
        };
        match b {
            b'#' if self.refbuf.is_empty() && kind == RefKind::Entity => {
                return Ok(Step::To(Lx::Reference(ret, RefKind::Dec), None));
            }
            b'x' if self.refbuf.is_empty() && kind == RefKind::Dec => {
                return Ok(Step::To(Lx::Reference(ret, RefKind::Hex), None));
            }
            b';' if self.refbuf.is_empty() => {
                return Err(Xe::NotWellFormed("empty reference"));
            }
            b';' => {}
            _ => return Err(bad),
        }
        match kind {
            RefKind::Entity => {
                let c = match self.refbuf.as_slice() {
                    b"amp" => b'&',
                    b"lt" => b'<',
                    b"gt" => b'>',
                    b"apos" => b'\'',
                    b"quot" => b'"',
                    _ => return Err(Xe::Restricted("undeclared entity")),
                };
                self.scratch.push(c);
            }
            RefKind::Dec | RefKind::Hex => {
                let radix = if kind == RefKind::Dec { 10 } else { 16 };
                // at most 8 digits: always fits
                let cp = self.refbuf.iter().try_fold(0u32, |acc, &d| {
                    acc.checked_mul(radix)?
                        .checked_add((d as char).to_digit(radix)?)
                });
                let ch = cp.and_then(char::from_u32).ok_or(bad)?;
                let c = ch as u32;
                if (c < 0x20 && is_nonchar_byte(c as u8)) || c == 0xfffe || c == 0xffff {
                    return Err(Xe::NotWellFormed("reference to a character XML forbids"));
                }
                let mut buf = [0u8; 4];
                self.scratch
                    .extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
        }
        let back = match ret {
            RefRet::Text => Lx::Content(Cs::Initial),
            RefRet::AttVal(kind, delim) => Lx::Element(kind, Es::AttVal(delim, false)),
        };
        Ok(Step::To(back, None))
    }
}

/// Differential checking against [`crate::xml::stream_parser::StreamParser`], shared by
/// `actors/tests/fast_parser_diff.rs` and the cargo-fuzz target `fast_parser_diff`.
#[doc(hidden)]
pub mod differential {
    use super::FastParser;
    use crate::stream::error::Condition;
    use crate::xml::stream_parser::{Limits, StreamEvent, StreamParser};

    /// The two parsers behind one face.
    pub trait Parser {
        fn new(limits: Limits) -> Self;
        fn feed(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), Condition>;
        fn parks(&self) -> bool;
        fn at_stanza_boundary(&self) -> bool;
        /// Park and resume (as an idle connection does), when between stanzas.
        fn park_and_resume(&mut self, limits: Limits);
    }

    /// The trait for each parser type: the same calls, by name.
    macro_rules! face {
        ($($t:ident),+) => {$(
            impl Parser for $t {
                fn new(limits: Limits) -> Self {
                    $t::new(limits)
                }
                fn feed(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), Condition> {
                    $t::feed(self, data, out).map_err(|e| e.condition)
                }
                fn parks(&self) -> bool {
                    self.park().is_some()
                }
                fn at_stanza_boundary(&self) -> bool {
                    $t::at_stanza_boundary(self)
                }
                fn park_and_resume(&mut self, limits: Limits) {
                    if let Some(parked) = self.park() {
                        *self = $t::resume(limits, &parked);
                    }
                }
            }
        )+};
    }
    face!(StreamParser, FastParser);

    /// Everything observable from one run: per piece fed, the events it produced (in
    /// their `Debug` form, which shows text nodes one by one), the parser's state after
    /// it; then the error, if any.
    #[derive(Debug, PartialEq, Eq)]
    pub struct Outcome {
        pub steps: Vec<(Vec<String>, bool, bool)>,
        pub error: Option<Condition>,
        /// The stanzas, for a comparison by `Element`'s own equality too.
        pub stanzas: Vec<minidom::Element>,
    }

    /// Feed `data` in pieces of the given sizes (the last piece takes the rest); with
    /// `park`, the parser is parked and resumed after every piece that leaves it between
    /// stanzas.
    pub fn run<P: Parser>(data: &[u8], limits: Limits, sizes: &[usize], park: bool) -> Outcome {
        let mut p = P::new(limits);
        let mut steps = Vec::new();
        let mut stanzas = Vec::new();
        let mut error = None;
        let mut rest = data;
        let mut sizes = sizes.iter().copied();
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut out = Vec::new();
            let r = p.feed(chunk, &mut out);
            let evs = out.iter().map(|e| format!("{e:?}")).collect();
            stanzas.extend(out.into_iter().filter_map(|e| match e {
                StreamEvent::Stanza(el) => Some(el),
                _ => None,
            }));
            steps.push((evs, p.parks(), p.at_stanza_boundary()));
            if park && r.is_ok() {
                p.park_and_resume(limits);
            }
            if let Err(c) = r {
                // an error is final
                assert!(
                    p.feed(b"<x/>", &mut Vec::new()).is_err(),
                    "parser recovered after {c:?}"
                );
                error = Some(c);
                break;
            }
        }
        Outcome {
            steps,
            error,
            stanzas,
        }
    }

    /// Both parsers on the same pieces: `Err` describes the first difference.
    pub fn compare(data: &[u8], limits: Limits, sizes: &[usize], park: bool) -> Result<(), String> {
        let old = run::<StreamParser>(data, limits, sizes, park);
        let new = run::<FastParser>(data, limits, sizes, park);
        if old.stanzas != new.stanzas {
            return Err(format!(
                "stanzas differ (Element equality)\n  rxml: {:?}\n  fast: {:?}",
                old.stanzas, new.stanzas
            ));
        }
        if old.error != new.error {
            return Err(format!(
                "errors differ: rxml {:?}, fast {:?}",
                old.error, new.error
            ));
        }
        for (i, (a, b)) in old.steps.iter().zip(&new.steps).enumerate() {
            if a != b {
                return Err(format!("piece {i} differs\n  rxml: {a:?}\n  fast: {b:?}"));
            }
        }
        if old.steps.len() != new.steps.len() {
            return Err(format!(
                "pieces fed differ: rxml {}, fast {}",
                old.steps.len(),
                new.steps.len()
            ));
        }
        Ok(())
    }

    /// Bound sets the fuzzers cycle through: the defaults, and small ones that inputs of
    /// a few hundred bytes reach (token 256 is rxml's floor).
    pub fn limit_sets() -> [Limits; 3] {
        [
            Limits::default(),
            Limits {
                max_stanza: 300,
                max_depth: 3,
                max_token: 64,
                max_attributes: 3,
            },
            Limits {
                max_stanza: 2000,
                max_depth: 6,
                max_token: 256,
                max_attributes: 8,
            },
        ]
    }

    /// The cargo-fuzz target: byte 0 picks the bounds and the piece sizes, the rest is
    /// the stream. Panics on the first difference.
    pub fn fuzz(data: &[u8]) {
        let Some((&sel, body)) = data.split_first() else {
            return;
        };
        let limits = limit_sets()[sel as usize % 3];
        let mut state = (sel as u32) | 1;
        let sizes: Vec<usize> = (0..body.len())
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 16) as usize + 1
            })
            .collect();
        let ones = vec![1; body.len()];
        for (sizes, park) in [
            (&sizes[..], sel & 0x80 != 0),
            (&[], false),
            (&ones[..], true),
        ] {
            if let Err(e) = compare(body, limits, sizes, park) {
                panic!("{e}\ninput: {:?}", String::from_utf8_lossy(body));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    type P = super::FastParser;
    include!("parser_contract_tests.rs");
}

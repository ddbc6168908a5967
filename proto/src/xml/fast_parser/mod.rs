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
//! The layers, one file each: `bytes` (byte classes, runs, character checks), `lexer`
//! (its states and tokens), `grammar` (declaration, tag and content grammar),
//! `names` (name checks, namespace scopes and resolution, element templates),
//! `stream` (header, stanzas, bounds) and `errors` (the stream error each failure
//! becomes). This file holds the parser's state, which ties them together, and its
//! public face.
//!
//! Memory is bounded as in `StreamParser`: the scratch buffer and an open tag's
//! attributes grow only while bytes are consumed without an event, which the pending
//! bound (`Limits::max_pending`) or the header bound cuts off; a stanza's tree grows only
//! with its bytes (`Limits::max_stanza`).

mod bytes;
#[doc(hidden)]
pub mod differential;
mod errors;
mod grammar;
mod lexer;
mod names;
mod stream;

use crate::stream::error::{Condition, StreamError};
use crate::xml::stream_parser::{ByteBudget, Limits, Parked, StreamEvent, StreamHeader};
use grammar::{PendAttr, Ps, Start};
use lexer::{Cs, Lx};
use minidom::Element;
use names::{Frame, no_namespace};
use rxml::Namespace;

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
    /// The element of the last `Ev::Start`, until the stream layer takes it.
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
    /// After a duplicate prefix on the header: only count the rest of its attributes.
    sniff_only: bool,
    header_attributes: usize,
    /// The prefix of the root element's name (set when its name is read).
    header_prefix: Option<String>,
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

    /// Reading the root element's opening tag (no element scope is open yet): its
    /// attributes are counted and its declarations kept (`StreamParser`'s sniffer).
    #[inline]
    fn sniffing(&self) -> bool {
        self.frames.is_empty()
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
}

#[cfg(test)]
mod tests {
    type P = super::FastParser;
    include!("../parser_contract_tests.rs");
}

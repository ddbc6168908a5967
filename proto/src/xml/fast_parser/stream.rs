//! The stream layer (what `StreamParser` adds to rxml): one round of reading per event
//! with the byte bounds charged on what it consumed, the stream header, the stanza
//! boundaries, the depth and attribute bounds, and the tree of the stanza being read.

use super::FastParser;
use super::bytes::is_xml_space;
use super::errors::Xe;
use super::grammar::{ElSt, Ev, Ps, Start};
use crate::ns;
use crate::stream::error::{Condition, StreamError};
use crate::xml::stream_parser::{
    StreamEvent, opening_tag, read_stream_element, too_big, too_many_attributes,
};

impl FastParser {
    pub(super) fn feed_inner(
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

    /// One event, at the stream's depth (what `StreamParser::handle` does with rxml's
    /// events).
    #[inline]
    fn handle(&mut self, ev: Ev, out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        match (self.depth, ev) {
            // the grammar reads a declaration only at the start, before the header; it
            // is an event so that the round ends where rxml's does
            (_, Ev::Decl) => Ok(()),
            (0 | 1, Ev::Text(n)) if is_xml_space(&self.scratch[..n]) => Ok(()),
            (0, Ev::Start) => {
                let s = self.started()?;
                self.header(s, out)
            }
            (0, _) => Err(StreamError::with_text(
                Condition::NotWellFormed,
                "expected <stream:stream>",
            )),
            (1, Ev::Start) => {
                let s = self.started()?;
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
            (1, Ev::Text(_)) => Err(StreamError::with_text(
                Condition::BadFormat,
                "text between stanzas",
            )),
            (1, Ev::End) => {
                self.depth = 0;
                out.push(StreamEvent::End);
                Ok(())
            }
            (_, Ev::Start) => {
                self.depth += 1;
                if self.depth - 1 > self.limits.max_depth {
                    return Err(StreamError::with_text(
                        Condition::PolicyViolation,
                        "elements nested too deep",
                    ));
                }
                let s = self.started()?;
                if s.el.attrs().len() > self.limits.max_attributes {
                    return Err(too_many_attributes());
                }
                self.stack.push(s.el);
                Ok(())
            }
            (_, Ev::End) => {
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
            (_, Ev::Text(n)) => {
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
        }
    }

    /// The element of the `Ev::Start` being handled (the grammar always sets it).
    #[inline]
    fn started(&mut self) -> Result<Start, StreamError> {
        self.start
            .take()
            .ok_or_else(|| StreamError::new(Condition::InternalServerError))
    }

    /// The root element's opening tag: the stream header, checked and announced.
    fn header(&mut self, start: Start, out: &mut Vec<StreamEvent>) -> Result<(), StreamError> {
        let mut el = start.el;
        let attrs = std::mem::take(el.attrs_mut());
        read_stream_element(
            el.name(),
            el.has_ns(ns::STREAM),
            Some(&self.header_prefix),
            attrs,
            &mut self.header,
        )?;
        self.depth = 1;
        self.decls_tag = Some(opening_tag(&self.header).into());
        out.push(StreamEvent::Header(std::mem::take(&mut self.header)));
        Ok(())
    }
}

//! The grammar layer (rxml's raw parser): what may follow what in the XML declaration,
//! an element's tag and its content; the open elements' raw names (so that an end tag
//! must match); each attribute checked against Namespaces in XML and kept until the tag
//! is complete. Its events go to the stream layer (`stream.rs`).

use super::FastParser;
use super::bytes::is_xml_space;
use super::errors::Xe;
use super::lexer::Tok;
use super::names::split_name;
use crate::ns;
use minidom::Element;

/// Where in the XML declaration (`version`, then optional `encoding` and `standalone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DeclSt {
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

/// Where in an opening tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ElSt {
    /// After the XML declaration: an element must come.
    Expected,
    AttrName,
    AttrEq,
    AttrValue,
}

/// The grammar's state (rxml's raw parser's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ps {
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
pub(super) struct PendAttr {
    pub(super) start: usize,
    pub(super) colon: Option<usize>,
    pub(super) end: usize,
    pub(super) value: String,
}

/// An element whose opening tag is complete, resolved.
#[derive(Debug)]
pub(super) struct Start {
    pub(super) el: Element,
    /// Bytes of the opening tag, `<` to `>`.
    pub(super) len: usize,
}

/// What the grammar layer hands to the stream layer (rxml's `Event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ev {
    /// The XML declaration (only ever at the start of the stream).
    Decl,
    /// An opening tag, complete and resolved: the element is in `FastParser::start`
    /// (a side field rather than a payload, so that the event stays a register).
    Start,
    End,
    /// The first n bytes of the scratch buffer.
    Text(usize),
}

impl FastParser {
    /// The next event, or `None` when the input ran out first.
    pub(super) fn next_event(&mut self, r: &mut &[u8]) -> Result<Option<Ev>, Xe> {
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
        if self.sniffing() {
            self.header_prefix = colon.map(|c| name[..c].to_owned());
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
        if self.sniffing() {
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
                    return Err(if self.sniffing() {
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
}

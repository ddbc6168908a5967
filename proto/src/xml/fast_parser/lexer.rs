//! The lexer (rxml's `Lexer`, state for state, with bulk loops over runs of bytes): its
//! states, the tokens it hands to the grammar, and the reading of text, CDATA, tags and
//! references into the scratch buffer. Comment contents are never read: a comment is an
//! error as soon as `<!--` is complete, in every state.

use super::FastParser;
use super::bytes::{
    APOS, CDATA, DIGIT, HEX, NAME, QUOT, Run, TEXT, cdata_ok, is, is_nonchar_byte, read_byte,
    read_run, skip_space,
};
use super::errors::Xe;
use super::names::check_name;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `<name ...>`
    Head,
    /// `</name>`
    Foot,
    /// `<?xml ...?>`
    Decl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Es {
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
pub(super) enum Me {
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
pub(super) enum Cs {
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
pub(super) enum RefRet {
    Text,
    AttVal(Kind, u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RefKind {
    Entity,
    Dec,
    Hex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lx {
    Content(Cs),
    Element(Kind, Es),
    Reference(RefRet, RefKind),
}

/// What the lexer found; names, values and text are in the scratch buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
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

impl FastParser {
    /// The next token, or `None` when the input ran out first.
    pub(super) fn lex(&mut self, r: &mut &[u8]) -> Result<Option<Tok>, Xe> {
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
                let wrong = Xe::Restricted("processing instructions");
                match literal(b, b"<?xml", i, wrong, Me::DeclStart)? {
                    Some(step) => Ok(step),
                    None => Ok(Step::To(
                        Lx::Element(Kind::Decl, Es::SpaceRequired),
                        Some(Tok::DeclStart),
                    )),
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
                let wrong = Xe::NotWellFormed("malformed CDATA section start");
                match literal(b, b"<![CDATA[", i, wrong, Me::CdataStart)? {
                    Some(step) => Ok(step),
                    None => Ok(Step::To(Lx::Content(Cs::Cdata), self.flush_text(true)?)),
                }
            }
            Me::CommentStart(i) => {
                let wrong = Xe::NotWellFormed("malformed comment start");
                // every state refuses a comment; what follows is never read
                match literal(b, b"<!--", i, wrong, Me::CommentStart)? {
                    Some(step) => Ok(step),
                    None => Ok(Step::To(Lx::Content(Cs::Initial), Some(Tok::CommentStart))),
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

/// Byte `i` of the fixed opener `lit` (`<?xml`, `<![CDATA[`, `<!--`) is `b`: the step to
/// the next byte (the state `at` that many bytes in), or `None` when `lit` is complete.
#[inline]
fn literal(b: u8, lit: &[u8], i: u8, wrong: Xe, at: fn(u8) -> Me) -> Result<Option<Step>, Xe> {
    if lit.get(usize::from(i)) != Some(&b) {
        return Err(wrong);
    }
    let i = i + 1;
    Ok((usize::from(i) < lit.len()).then(|| Step::To(Lx::Content(Cs::MaybeElement(at(i))), None)))
}

//! A light incremental scanner for an XMPP stream.
//!
//! It does not build a tree: it only tracks tag boundaries (with single- and
//! double-quoted attribute values, which may contain `>`) and nesting depth, and
//! reports the stream header, each complete top-level element as a byte range, and
//! the stream end. The few things the driver needs from an element (its name, an
//! attribute, the text of a child) are read from those bytes by the helpers below.
//! Data may arrive in chunks of any size.

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Character data between tags.
    Text,
    /// Just after `<`.
    TagOpen,
    /// Inside a start or end tag (`start` tells which).
    Tag { start: bool },
    /// `<?...?>`
    Pi,
    /// `<!...>`: comment or CDATA section.
    Bang,
}

/// What the scanner found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The stream header start tag.
    Header(Range<usize>),
    /// A complete top-level element (stanza or negotiation element).
    Element(Range<usize>),
    /// `</stream:stream>`.
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError(pub &'static str);

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Largest element the driver buffers (a server sending more is broken or hostile).
const MAX_ELEMENT: usize = 1 << 20;

pub struct Scanner {
    buf: Vec<u8>,
    pos: usize,
    depth: usize,
    state: State,
    quote: u8,
    tag_start: usize,
    elem_start: usize,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            buf: Vec::with_capacity(4096),
            pos: 0,
            depth: 0,
            state: State::Text,
            quote: 0,
            tag_start: 0,
            elem_start: 0,
        }
    }

    /// Forget everything (stream restart after STARTTLS or SASL success).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.depth = 0;
        self.state = State::Text;
        self.quote = 0;
    }

    /// The bytes of a range returned by [`Scanner::next_item`] (valid until the next
    /// [`Scanner::buffer`] call).
    pub fn slice(&self, r: Range<usize>) -> &[u8] {
        self.buf.get(r).unwrap_or(&[])
    }

    /// Drop consumed bytes and hand out the buffer to append newly read data to.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        let keep = if self.depth >= 2 {
            self.elem_start
        } else if self.state != State::Text {
            self.tag_start
        } else {
            self.pos
        };
        if keep > 0 {
            self.buf.drain(..keep);
            self.pos -= keep;
            self.tag_start = self.tag_start.saturating_sub(keep);
            self.elem_start = self.elem_start.saturating_sub(keep);
        }
        if self.buf.capacity() - self.buf.len() < 2048 {
            self.buf.reserve(8192);
        }
        &mut self.buf
    }

    /// Append data (tests).
    #[cfg(test)]
    pub fn push(&mut self, data: &[u8]) {
        self.buffer().extend_from_slice(data);
    }

    /// Bytes buffered for an element still incomplete.
    fn pending(&self) -> usize {
        if self.depth >= 2 {
            self.buf.len() - self.elem_start
        } else {
            self.buf.len() - self.pos
        }
    }

    /// The next complete item, or `None` when more data is needed.
    pub fn next_item(&mut self) -> Result<Option<Item>, ScanError> {
        loop {
            match self.state {
                State::Text => {
                    let rest = &self.buf[self.pos..];
                    match rest.iter().position(|&b| b == b'<') {
                        Some(i) => {
                            self.tag_start = self.pos + i;
                            self.pos += i + 1;
                            self.state = State::TagOpen;
                        }
                        None => {
                            self.pos = self.buf.len();
                            return self.need_more();
                        }
                    }
                }
                State::TagOpen => {
                    let Some(&b) = self.buf.get(self.pos) else {
                        return self.need_more();
                    };
                    self.state = match b {
                        b'?' => State::Pi,
                        b'!' => State::Bang,
                        b'/' => State::Tag { start: false },
                        b'>' | b'<' => return Err(ScanError("malformed tag")),
                        _ => State::Tag { start: true },
                    };
                    if b == b'?' || b == b'!' || b == b'/' {
                        self.pos += 1;
                    }
                    self.quote = 0;
                }
                State::Tag { start } => {
                    let mut end = None;
                    let mut q = self.quote;
                    for (i, &b) in self.buf[self.pos..].iter().enumerate() {
                        if q != 0 {
                            if b == q {
                                q = 0;
                            }
                        } else if b == b'\'' || b == b'"' {
                            q = b;
                        } else if b == b'>' {
                            end = Some(self.pos + i);
                            break;
                        }
                    }
                    self.quote = q;
                    let Some(gt) = end else {
                        self.pos = self.buf.len();
                        return self.need_more();
                    };
                    self.pos = gt + 1;
                    self.state = State::Text;
                    let self_closing = start && gt > 0 && self.buf[gt - 1] == b'/';
                    if let Some(item) = self.tag_done(start, self_closing)? {
                        return Ok(Some(item));
                    }
                }
                State::Pi => match find(&self.buf[self.pos..], b"?>") {
                    Some(i) => {
                        self.pos += i + 2;
                        self.state = State::Text;
                    }
                    None => {
                        self.pos = self.buf.len().saturating_sub(1).max(self.pos);
                        return self.need_more();
                    }
                },
                State::Bang => {
                    let rest = &self.buf[self.pos..];
                    if rest.len() < 7 && (b"[CDATA[".starts_with(rest) || b"--".starts_with(rest)) {
                        return self.need_more();
                    }
                    let terminator: &[u8] = if rest.starts_with(b"[CDATA[") {
                        b"]]>"
                    } else if rest.starts_with(b"--") {
                        b"-->"
                    } else {
                        b">"
                    };
                    match find(rest, terminator) {
                        Some(i) => {
                            self.pos += i + terminator.len();
                            self.state = State::Text;
                        }
                        None => return self.need_more(),
                    }
                }
            }
        }
    }

    fn need_more(&self) -> Result<Option<Item>, ScanError> {
        if self.pending() > MAX_ELEMENT {
            Err(ScanError("element too large"))
        } else {
            Ok(None)
        }
    }

    fn tag_done(&mut self, start: bool, self_closing: bool) -> Result<Option<Item>, ScanError> {
        let range = self.tag_start..self.pos;
        if start {
            match self.depth {
                0 => {
                    self.depth = 1;
                    Ok(Some(Item::Header(range)))
                }
                1 => {
                    self.elem_start = self.tag_start;
                    if self_closing {
                        Ok(Some(Item::Element(range)))
                    } else {
                        self.depth = 2;
                        Ok(None)
                    }
                }
                _ => {
                    if !self_closing {
                        self.depth += 1;
                    }
                    Ok(None)
                }
            }
        } else {
            match self.depth {
                0 => Err(ScanError("end tag outside the stream")),
                1 => {
                    self.depth = 0;
                    Ok(Some(Item::End))
                }
                _ => {
                    self.depth -= 1;
                    if self.depth == 1 {
                        Ok(Some(Item::Element(self.elem_start..self.pos)))
                    } else {
                        Ok(None)
                    }
                }
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            Some(j) => {
                let k = i + j;
                if &hay[k..k + needle.len()] == needle {
                    return Some(k);
                }
                i = k + 1;
            }
            None => return None,
        }
    }
    None
}

fn is_name_end(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')
}

/// The local name of an element (`stream:features` -> `features`).
pub fn local_name(el: &[u8]) -> &[u8] {
    let rest = el.strip_prefix(b"<").unwrap_or(el);
    let end = rest
        .iter()
        .position(|&b| is_name_end(b))
        .unwrap_or(rest.len());
    let name = &rest[..end];
    match name.iter().position(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// The value of an attribute of the element's start tag (unescaped only for the five
/// predefined entities, which is all the driver meets).
pub fn attr<'a>(el: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let name = name.as_bytes();
    let rest = el.strip_prefix(b"<")?;
    let mut i = rest.iter().position(|&b| is_name_end(b))?;
    loop {
        while i < rest.len() && rest[i].is_ascii_whitespace() {
            i += 1;
        }
        let c = *rest.get(i)?;
        if c == b'>' || c == b'/' {
            return None;
        }
        let n0 = i;
        while i < rest.len() && rest[i] != b'=' && !rest[i].is_ascii_whitespace() {
            i += 1;
        }
        let n = &rest[n0..i];
        while i < rest.len() && (rest[i].is_ascii_whitespace() || rest[i] == b'=') {
            i += 1;
        }
        let q = *rest.get(i)?;
        if q != b'\'' && q != b'"' {
            return None;
        }
        let v0 = i + 1;
        let len = rest[v0..].iter().position(|&b| b == q)?;
        if n == name {
            return Some(&rest[v0..v0 + len]);
        }
        i = v0 + len + 1;
    }
}

/// Length of the start tag (up to and including its `>`), honouring quotes.
fn start_tag_len(el: &[u8]) -> Option<usize> {
    let mut q = 0u8;
    for (i, &b) in el.iter().enumerate() {
        if q != 0 {
            if b == q {
                q = 0;
            }
        } else if b == b'\'' || b == b'"' {
            q = b;
        } else if b == b'>' {
            return Some(i + 1);
        }
    }
    None
}

/// Text between the start tag and the first following tag (`<challenge>TEXT</challenge>`).
pub fn text(el: &[u8]) -> &[u8] {
    let Some(s) = start_tag_len(el) else {
        return &[];
    };
    if el[..s].ends_with(b"/>") {
        return &[];
    }
    let rest = &el[s..];
    let e = rest.iter().position(|&b| b == b'<').unwrap_or(rest.len());
    &rest[..e]
}

/// Every descendant element with this local name (prefix ignored), as the byte
/// slices from its `<` to the end of the element data (callers use [`text`] and
/// [`attr`] on them).
pub fn children<'a>(el: &'a [u8], name: &str) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut i = 1;
    while let Some(j) = el[i..].iter().position(|&b| b == b'<') {
        let at = i + j;
        let tail = &el[at..];
        if tail.len() > 1 && tail[1] != b'/' && local_name(tail) == name.as_bytes() {
            out.push(tail);
        }
        i = at + 1;
    }
    out
}

pub fn child<'a>(el: &'a [u8], name: &str) -> Option<&'a [u8]> {
    let mut i = 1;
    while let Some(j) = el[i..].iter().position(|&b| b == b'<') {
        let at = i + j;
        let tail = &el[at..];
        if tail.len() > 1 && tail[1] != b'/' && local_name(tail) == name.as_bytes() {
            return Some(tail);
        }
        i = at + 1;
    }
    None
}

/// Undo XML escaping of the five predefined entities and numeric references.
pub fn unescape(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    if !s.contains('&') {
        return s.into_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest: &str = &s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let ent = &tail[1..semi];
        let ch = match ent {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "apos" => Some('\''),
            "quot" => Some('"'),
            _ => ent
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=semi]),
        }
        rest = &tail[semi + 1..];
    }
    out.push_str(rest);
    out
}

/// Escape text for an attribute value or character data.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(chunks: &[&[u8]]) -> Vec<(String, Option<String>)> {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            while let Some(item) = s.next_item().expect("scan") {
                match item {
                    Item::Header(r) => out.push((
                        "HEADER".into(),
                        attr(s.slice(r), "id").map(|v| String::from_utf8_lossy(v).into()),
                    )),
                    Item::Element(r) => {
                        let el = s.slice(r);
                        out.push((String::from_utf8_lossy(el).into_owned(), None::<String>));
                    }
                    Item::End => out.push(("END".into(), None)),
                }
            }
        }
        out
    }

    const DOC: &str = "<?xml version='1.0'?><stream:stream xmlns=\"jabber:client\" id='a>b' \
        xmlns:stream='http://etherx.jabber.org/streams'><stream:features><mechanisms \
        xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>SCRAM-SHA-1</mechanism>\
        <mechanism>PLAIN</mechanism></mechanisms><starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>\
        </stream:features> <message from=\"a@b/c\" note='x > y &apos;q&apos;'><body>12 34</body></message>\
        <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";

    #[test]
    fn any_chunking_gives_the_same_items() {
        let whole = scan_all(&[DOC.as_bytes()]);
        assert_eq!(whole.len(), 5, "{whole:?}");
        assert_eq!(whole[0].1.as_deref(), Some("a>b"));
        assert!(whole[1].0.starts_with("<stream:features>"));
        assert!(whole[2].0.starts_with("<message"));
        assert!(whole[3].0.starts_with("<proceed"));
        assert_eq!(whole[4].0, "END");
        for size in 1..40 {
            let chunks: Vec<&[u8]> = DOC.as_bytes().chunks(size).collect();
            assert_eq!(scan_all(&chunks), whole, "chunk size {size}");
        }
    }

    #[test]
    fn element_helpers() {
        let f = b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
            <mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms>\
            <starttls xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"><required/></starttls></stream:features>";
        assert_eq!(local_name(f), b"features");
        let mechs: Vec<&[u8]> = children(f, "mechanism").into_iter().map(text).collect();
        assert_eq!(mechs, vec![&b"SCRAM-SHA-1"[..], &b"PLAIN"[..]]);
        let tls = child(f, "starttls").expect("starttls");
        assert_eq!(
            attr(tls, "xmlns"),
            Some(&b"urn:ietf:params:xml:ns:xmpp-tls"[..])
        );
        let m = b"<message type=\"chat\" from='a@b/c' to = \"x\"><body>1 2</body></message>";
        assert_eq!(attr(m, "from"), Some(&b"a@b/c"[..]));
        assert_eq!(attr(m, "to"), Some(&b"x"[..]));
        assert_eq!(attr(m, "type"), Some(&b"chat"[..]));
        assert_eq!(attr(m, "id"), None);
        assert_eq!(child(m, "body").map(text), Some(&b"1 2"[..]));
        assert_eq!(text(b"<success xmlns='x'/>"), b"");
        assert_eq!(text(b"<challenge xmlns='x'>abc=</challenge>"), b"abc=");
        assert_eq!(unescape(b"a&amp;b&#x41;&#66;&lt;"), "a&bAB<");
    }

    #[test]
    fn cdata_and_errors() {
        let doc = b"<stream:stream><message><body><![CDATA[<not a tag>]]></body></message>";
        let items = scan_all(&[&doc[..]]);
        assert_eq!(items.len(), 2);
        let mut s = Scanner::new();
        s.push(b"</x>");
        assert!(s.next_item().is_err());
    }
}

//! Byte classes (rxml's `lexer::ranges`, as one table), runs of bytes of one class, and
//! the character checks the lexer applies to what it read: the lexer's primitives.

/// Bytes that may continue character data (not `<`, `&`, `]`, CR, or a control byte).
pub(super) const TEXT: u8 = 1;
/// Bytes that may continue a CDATA section (not `]`, CR, or a control byte).
pub(super) const CDATA: u8 = 2;
/// Bytes that may continue a name (ASCII name characters and every non-ASCII byte).
pub(super) const NAME: u8 = 4;
/// Bytes that may continue an attribute value in `'` (not `'`, `&`, `<`, below 0x20).
pub(super) const APOS: u8 = 8;
/// Bytes that may continue an attribute value in `"`.
pub(super) const QUOT: u8 = 16;
/// XML whitespace (space, tab, CR, LF).
pub(super) const SPACE: u8 = 32;
/// Digits of a decimal character reference.
pub(super) const DIGIT: u8 = 64;
/// Digits of a hexadecimal character reference.
pub(super) const HEX: u8 = 128;

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
pub(super) fn is(b: u8, mask: u8) -> bool {
    CLASS[b as usize] & mask != 0
}

/// A byte XML never allows, even in a reference-free run (rxml's `is_nonchar_byte`).
#[inline]
pub(super) fn is_nonchar_byte(b: u8) -> bool {
    b <= 0x08 || b == 0x0b || b == 0x0c || (0x0e..=0x1f).contains(&b)
}

#[inline]
pub(super) fn is_xml_space(s: &[u8]) -> bool {
    s.iter().all(|&b| is(b, SPACE))
}

/// How a run of bytes ended (rxml's `read_validated_bytes`, with its exact limit rule:
/// the limit counts what the buffer already holds, and is only reported when a byte of
/// the run is waiting beyond it).
pub(super) enum Run {
    /// The input ended inside the run (everything read went into the buffer).
    More,
    /// The buffer is full and the run goes on.
    Limit,
    /// The run ended at this byte, which is consumed.
    Delim(u8),
}

#[inline]
pub(super) fn read_run(buf: &mut Vec<u8>, r: &mut &[u8], mask: u8, limit: usize) -> Run {
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
pub(super) fn skip_space(r: &mut &[u8]) -> (usize, Option<u8>) {
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
pub(super) fn read_byte(r: &mut &[u8]) -> Option<u8> {
    let (&b, rest) = r.split_first()?;
    *r = rest;
    Some(b)
}

/// rxml's `validate_cdata` on text that is valid UTF-8: no control characters (other
/// than tab, LF, CR) and no U+FFFE / U+FFFF.
#[inline]
pub(super) fn cdata_ok(s: &[u8]) -> bool {
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

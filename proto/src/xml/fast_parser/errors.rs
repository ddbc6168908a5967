//! What went wrong while reading, at the precision the stream error needs, and the
//! stream error (RFC 6120 condition and text) each case becomes.

use crate::stream::error::{Condition, StreamError};
use crate::xml::stream_parser::too_many_attributes;

/// What went wrong, at the precision the stream error needs (rxml's errors, grouped as
/// `stream_parser::map_xml_error` maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Xe {
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
    /// A prefix declared twice on the stream header (see `FastParser::feed_inner` in `stream.rs`).
    HeaderDupPrefix,
}

impl Xe {
    pub(super) fn into_stream_error(self, at_header: bool) -> StreamError {
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

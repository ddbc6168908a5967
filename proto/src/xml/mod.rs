//! XML: the stream parsers, the writer, escaping.

pub mod escape;
pub mod fast_parser;
pub mod log_mask;
pub mod stream_parser;
pub mod writer;

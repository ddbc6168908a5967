//! Stream-level protocol: errors (RFC 6120 §4.9).

pub mod error;

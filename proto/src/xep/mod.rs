//! Payloads of the XEPs the server answers itself.

pub mod adhoc;
pub mod disco;
pub mod register;
pub mod register_limit;
pub mod version;

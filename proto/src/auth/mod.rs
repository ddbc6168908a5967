//! Authentication: SASL (RFC 6120 §6), SCRAM credentials, XEP-0078, the failure throttle.

pub mod legacy;
pub mod sasl;
pub mod scram;
pub mod scram_messages;
pub mod throttle;

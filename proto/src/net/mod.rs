//! Transport security and shaping: TLS set-up and channel binding, the record layer,
//! the read-rate shaper.

pub mod record_layer;
pub mod shaper;
pub mod tls;

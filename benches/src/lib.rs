//! Pieces of the xmppd-load driver shared with the microbenchmarks: the incremental
//! XML scanner and the SASL client.

pub mod scram;
pub mod xml;

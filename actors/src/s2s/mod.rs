//! Federation, outbound: the `OutboundQueue` actor of each (remote domain, local
//! domain) pair ([`queue`]), the outgoing stream it runs ([`link`]), finding the peer
//! ([`resolve`]) and the outgoing TLS client ([`tls`]). Inbound server streams are a
//! strategy of the stream core (`stream/s2s_in.rs`).

pub mod link;
pub mod queue;
pub mod resolve;
pub mod tls;

pub use queue::OutboundQueue;

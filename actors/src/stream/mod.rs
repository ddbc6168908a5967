//! Inbound streams: one core for every kind of peer ([`core`]), and one negotiation
//! strategy per stream namespace, picked from the first stream header.
//!
//! - [`c2s`]: clients (`jabber:client`): STARTTLS, SASL, legacy authentication,
//!   resource binding, then the stream goes to a `Session`.
//! - [`component`]: trusted components (`jabber:component:accept`, XEP-0114): the
//!   handshake, then the stream goes to a `Component`.
//! - [`s2s_in`]: servers (`jabber:server`): STARTTLS, dialback, then stanzas from the
//!   verified domains become signals; the stream stays with its `Connection`.
//!
//! Other stream namespaces are refused with `invalid-namespace`.

pub mod c2s;
mod c2s_legacy;
mod c2s_register;
mod c2s_sasl;
pub mod component;
pub mod core;
pub mod s2s_in;

/// A place among the key derivations running at once (password changes take one too).
pub use c2s_sasl::derivation_permit;

pub use self::core::{Accepted, Connection, StreamCore};
use xmppd_proto::stream::error::{Condition, StreamError};

/// The negotiation strategies, by stream namespace.
pub static STRATEGIES: &[&core::Strategy] =
    &[&c2s::STRATEGY, &component::STRATEGY, &s2s_in::STRATEGY];

/// Each strategy's state for one stream.
pub enum Kind {
    /// No stream header yet.
    Undecided,
    Client(Box<c2s::ClientStream>),
    Component(Box<component::ComponentStream>),
    Server(Box<s2s_in::ServerStream>),
}

/// The strategy for a stream whose header declared `default_ns`, or the stream error
/// for it (RFC 6120 §4.9.3.10 `invalid-namespace`).
pub fn strategy_for(default_ns: Option<&str>) -> Result<&'static core::Strategy, StreamError> {
    if let Some(s) = STRATEGIES.iter().find(|s| Some(s.ns) == default_ns) {
        return Ok(s);
    }
    Err(StreamError::new(Condition::InvalidNamespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmppd_proto::ns;

    #[test]
    fn namespaces_pick_their_strategy() {
        let c = strategy_for(Some(ns::CLIENT)).ok().map(|s| s.ns);
        assert_eq!(c, Some(ns::CLIENT));
        let c = strategy_for(Some(ns::COMPONENT)).ok().map(|s| s.ns);
        assert_eq!(c, Some(ns::COMPONENT));
        let s = strategy_for(Some(ns::SERVER)).ok().map(|s| s.ns);
        assert_eq!(s, Some(ns::SERVER));
        for other in [Some("urn:nope"), None] {
            let e = strategy_for(other).err().expect("refused");
            assert_eq!(e.condition, Condition::InvalidNamespace);
        }
    }
}

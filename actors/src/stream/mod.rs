//! Inbound streams: one core for every kind of peer ([`core`]), and one negotiation
//! strategy per stream namespace, picked from the first stream header.
//!
//! - [`c2s`]: clients (`jabber:client`): STARTTLS, SASL, legacy authentication,
//!   resource binding, then the stream goes to a `Session`.
//!
//! - [`component`]: trusted components (`jabber:component:accept`, XEP-0114): the
//!   handshake, then the stream goes to a `Component`.
//!
//! Server-to-server streams (`jabber:server`) get a strategy here, in a file of their
//! own and a line in [`STRATEGIES`]; until then they are refused with
//! `invalid-namespace`.

pub mod c2s;
mod c2s_legacy;
mod c2s_register;
mod c2s_sasl;
pub mod component;
pub mod core;

/// A place among the key derivations running at once (password changes take one too).
pub(crate) use c2s_sasl::derivation_permit;

pub use self::core::{Accepted, Connection, StreamCore};
use xmppd_proto::ns;
use xmppd_proto::stream::error::{Condition, StreamError};

/// The negotiation strategies, by stream namespace.
pub static STRATEGIES: &[&core::Strategy] = &[&c2s::STRATEGY, &component::STRATEGY];

/// Stream kinds that exist but are not enabled on this server, with what their peers
/// are told.
const NOT_ENABLED: &[(&str, &str)] = &[(
    ns::SERVER,
    "server-to-server streams are not enabled on this server",
)];

/// Each strategy's state for one stream.
pub enum Kind {
    /// No stream header yet.
    Undecided,
    Client(Box<c2s::ClientStream>),
    Component(Box<component::ComponentStream>),
}

/// The strategy for a stream whose header declared `default_ns`, or the stream error
/// for it (RFC 6120 §4.9.3.10 `invalid-namespace`).
pub fn strategy_for(default_ns: Option<&str>) -> Result<&'static core::Strategy, StreamError> {
    if let Some(s) = STRATEGIES.iter().find(|s| Some(s.ns) == default_ns) {
        return Ok(s);
    }
    match NOT_ENABLED.iter().find(|(n, _)| Some(*n) == default_ns) {
        Some((_, why)) => Err(StreamError::with_text(Condition::InvalidNamespace, *why)),
        None => Err(StreamError::new(Condition::InvalidNamespace)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_pick_their_strategy() {
        let c = strategy_for(Some(ns::CLIENT)).ok().map(|s| s.ns);
        assert_eq!(c, Some(ns::CLIENT));
        let c = strategy_for(Some(ns::COMPONENT)).ok().map(|s| s.ns);
        assert_eq!(c, Some(ns::COMPONENT));
        for other in [Some(ns::SERVER), Some("urn:nope"), None] {
            let e = strategy_for(other).err().expect("refused");
            assert_eq!(e.condition, Condition::InvalidNamespace);
        }
    }
}

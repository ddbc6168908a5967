//! Instant messaging rules (RFC 6121): roster and subscriptions, blocking (XEP-0191),
//! offline storage (XEP-0160), the §8.5 choice of resources ([`routing`]), and the
//! account's decisions over its state, returned as effects ([`account`]).

pub mod account;
pub mod blocking;
pub mod offline;
pub mod roster;
pub mod routing;

//! The xmppd protocol code: plain functions and types with no actors in them, unit-tested
//! without a runtime. The engine crate (`xmppd-actors`) holds the state and carries out
//! what these decide.
//!
//! - [`xml`]: the stream parsers (the hand-written one connections run and the rxml one it
//!   is held to), the writer, escaping, log masking;
//! - [`stream`]: stream errors and stream features;
//! - [`stanza`]: stanza kinds, addresses, error replies;
//! - [`auth`]: SASL, SCRAM credentials, legacy authentication, the failure throttle;
//! - [`im`]: roster and subscription rules, blocking, offline storage rules, the §8.5
//!   resource choice, the account's presence/subscription decisions as effects;
//! - [`xep`]: payloads of the XEPs the server answers (disco, version, ...);
//! - [`net`]: TLS set-up, the record layer, the read shaper;
//! - [`s2s`]: server-to-server decisions (dialback keys, domain pairs, the outgoing
//!   stream's next step, router records);
//! - [`config`]: the settings schema.

pub mod auth;
pub mod component;
pub mod config;
pub mod im;
pub mod muc;
pub mod net;
pub mod ns;
pub mod s2s;
pub mod stanza;
pub mod stream;
pub mod xep;
pub mod xml;

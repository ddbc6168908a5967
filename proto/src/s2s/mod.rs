//! Server-to-server protocol decisions (RFC 6120, XEP-0220 dialback, XEP-0185 keys,
//! XEP-0178 certificate names), as plain functions the federation actors call.
//!
//! - [`certs`]: trusted certificates and whether a chain validates for a domain;
//! - [`dialback`]: dialback keys and the elements they travel in;
//! - [`pairs`]: the domain pairs verified on an inbound stream, and the check every
//!   stanza's `from` and `to` pass;
//! - [`outgoing`]: what an outgoing stream does next, given the features it was offered;
//! - [`retry`]: the outbound queue's backoff and when a waiting stanza is given up;
//! - [`routes`]: router records and domain patterns (`*.example.com`);
//! - [`namespace`]: stanzas between `jabber:server` on the wire and `jabber:client` inside.

pub mod certs;
pub mod dialback;
pub mod namespace;
pub mod outgoing;
pub mod pairs;
pub mod retry;
pub mod routes;

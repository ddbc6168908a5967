//! The xmppd engine: signals, the actors that exchange them, and the protocol code
//! (plain functions and types, no actix) they run.

pub mod account;
pub mod auth_throttle;
pub mod blocking;
pub mod config;
pub mod connection;
pub mod context;
pub mod disco;
pub mod fast_parser;
pub mod fuzzing;
pub mod io;
pub mod legacy_auth;
pub mod listener;
pub mod log_mask;
pub mod ns;
pub mod offline;
pub mod record_layer;
pub mod registry;
pub mod roster;
pub mod routes;
pub mod sasl;
pub mod scram;
pub mod server;
pub mod server_iq;
pub mod session;
pub mod shaper;
pub mod signals;
pub mod stanza;
pub mod storage;
pub mod stream_error;
pub mod stream_parser;
pub mod tls;
pub mod version;
pub mod xml_escape;
pub mod xml_writer;

//! The xmppd engine: signals, the actors that exchange them, and the protocol code
//! (plain functions and types, no actix) they run.

pub mod account;
pub mod component;
pub mod context;
pub mod features;
pub mod fuzzing;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod registry;
pub mod rooms;
pub mod s2s;
pub mod server;
pub mod session;
pub mod signals;
pub mod storage;
pub mod stream;

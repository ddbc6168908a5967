//! Offline message storage (XEP-0160): no iq of its own; the account actor stores what
//! nobody can take (`account/offline.rs`). Advertised as XEP-0030's `msgoffline`.

use super::{Entity, Feature, always};
use xmppd_proto::im::offline;

pub const FEATURE: Feature = Feature {
    name: "offline",
    enabled: always,
    disco: &[(Entity::Server, offline::FEATURE)],
    iq: &[],
    stream: None,
    taps: &[],
};

//! Messages to the account's bare JID that reached the account (RFC 6121 §8.5.2): the
//! resources that became available since the registry looked get it (chosen by
//! [`routing::select`]); otherwise it is stored offline (XEP-0160) or returned.

use super::{Effect, State, StoreOp};
use crate::im::{offline, routing};
use crate::stanza::ErrorCondition;
use minidom::Element;
use std::time::SystemTime;
use xmpp_parsers::jid::Jid;

impl State {
    /// A message from `from` reached the account; `now` stamps it if it is stored.
    pub fn inbound_message(&self, from: &Jid, msg: &Element, now: SystemTime) -> Vec<Effect> {
        if self.exists != Some(true) || self.is_blocked(from) {
            return vec![Effect::Bounce {
                condition: ErrorCondition::ServiceUnavailable,
                text: None,
            }];
        }
        let to_take = routing::select(
            self.resources
                .iter()
                .map(|r| (r.presence.is_some(), r.priority)),
            msg.attr("type"),
        );
        if !to_take.is_nobody() {
            return self
                .resources
                .iter()
                .filter(|r| to_take.takes(r.presence.is_some(), r.priority))
                .map(|r| Effect::Deliver {
                    resource: r.name.clone(),
                })
                .collect();
        }
        if !offline::should_store(msg) {
            return Vec::new();
        }
        let mut msg = msg.clone();
        offline::stamp(&mut msg, self.bare.domain().as_str(), now);
        vec![Effect::Store(StoreOp::OfflinePush {
            xml: crate::xml::writer::to_string(&msg),
        })]
    }
}

//! The registry's side of federation: dialback verifications handed to the outbound
//! queue of the pair, queues that went idle, and the list of queues.

use super::Registry;
use crate::signals::ToOutbound;
use crate::signals::to_outbound::{DialbackVerify, ListQueues, OutboundIdle};
use actix::prelude::*;
use xmppd_proto::s2s::dialback::Verdict;

impl Handler<DialbackVerify> for Registry {
    type Result = bool;
    fn handle(&mut self, d: DialbackVerify, _: &mut Context<Self>) -> bool {
        // the same test as the inbound stream's (Settings::served_here): rooms and
        // components served here federate as their own domains, connected or not
        let served = |name: &str| {
            self.ctx
                .as_ref()
                .is_some_and(|c| c.settings.get().served_here(&name.to_ascii_lowercase()))
        };
        if !served(&d.local) || served(&d.remote) {
            // XEP-0220 §2.4: item-not-found for this pair, the stream stays
            let _ = d.verify.reply.send(Verdict::NotServed);
            return true;
        }
        match self.queue(&d.remote, &d.local) {
            Err(NoQueue::TooMany) => return false,
            Ok(q) => {
                if let Err(e) = q.send.try_send(ToOutbound::Verify(d.verify))
                    && let ToOutbound::Verify(v) = e.into_inner()
                {
                    let _ = v.reply.send(Verdict::Busy);
                }
            }
            // federation is off (or not wired yet): we cannot ask
            Err(NoQueue::Disabled) => {
                let _ = d.verify.reply.send(Verdict::Unreachable);
            }
        }
        true
    }
}

/// Why no outbound queue is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NoQueue {
    /// Federation is off (or the registry is not wired yet).
    Disabled,
    /// `s2s.max_outbound_queues` run already.
    TooMany,
}

impl Handler<OutboundIdle> for Registry {
    type Result = ();
    fn handle(&mut self, i: OutboundIdle, _: &mut Context<Self>) {
        let key = (i.remote, i.local);
        if self.outbound.get(&key).is_some_and(|q| q.send == i.send) {
            self.outbound.remove(&key);
        }
    }
}

impl Handler<ListQueues> for Registry {
    type Result = MessageResult<ListQueues>;
    fn handle(&mut self, _: ListQueues, _: &mut Context<Self>) -> Self::Result {
        self.outbound.retain(|_, q| q.send.connected());
        MessageResult(self.outbound.values().map(|q| q.state.clone()).collect())
    }
}

//! Federation, outbound: the `OutboundQueue` actor of each (remote domain, local
//! domain) pair ([`queue`]), the outgoing stream it runs ([`link`]), finding the peer
//! ([`resolve`]) and the outgoing TLS client ([`tls`]). Inbound server streams are a
//! strategy of the stream core (`stream/s2s_in.rs`).

pub mod link;
pub mod queue;
pub mod resolve;
pub mod tls;

pub use queue::OutboundQueue;

use crate::context::Ctx;
use crate::signals::to_outbound::{ListQueues, QueueInfo, QueueState};

/// Every running outbound queue's state, length and counters (for monitoring).
pub async fn queues(ctx: &Ctx) -> Vec<QueueInfo> {
    let Ok(list) = ctx.registry.list_queues.send(ListQueues).await else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for q in list {
        if let Ok(info) = q.send(QueueState).await {
            out.push(info);
        }
    }
    out.sort_by(|a, b| (&a.remote, &a.local).cmp(&(&b.remote, &b.local)));
    out
}

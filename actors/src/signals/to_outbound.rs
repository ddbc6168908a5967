//! What the registry sends an outbound queue (federation), and what inbound server
//! streams ask the registry for (dialback verification through the queue of the
//! authoritative server).

use super::Signal;
use actix::prelude::*;

/// A message for the `OutboundQueue` of one (remote domain, local domain) pair.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub enum ToOutbound {
    /// Deliver this signal to the remote domain.
    Signal(Signal),
    /// Ask the remote (authoritative) server whether it made a dialback key.
    Verify(Verify),
}

/// A dialback verification (XEP-0220 §2.3): `<db:verify from=local to=remote id>key`,
/// sent over our outgoing stream to `remote`; the answer goes to `reply` (a dropped
/// reply means the remote server could not be reached).
pub struct Verify {
    pub id: String,
    pub key: String,
    pub reply: tokio::sync::oneshot::Sender<xmppd_proto::s2s::dialback::Verdict>,
}

/// An inbound server stream asks the registry to verify a dialback key with the
/// remote domain's authoritative server. The answer is false when the registry may not
/// start another outbound queue (`s2s.max_outbound_queues`): nothing was asked.
#[derive(actix::Message)]
#[rtype(result = "bool")]
pub struct DialbackVerify {
    /// The domain that claims to send (the authoritative server is its).
    pub remote: String,
    /// Our domain the claim is for.
    pub local: String,
    pub verify: Verify,
}

/// An outbound queue with nothing to do asks the registry to forget it. Once answered,
/// the registry sends it nothing more: whatever the registry sent before is in the
/// queue's mailbox ahead of the stop the queue then sends itself, so nothing is lost
/// in a stopping mailbox.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct OutboundIdle {
    pub remote: String,
    pub local: String,
    /// The queue asking (the registry may have replaced it already).
    pub send: Recipient<ToOutbound>,
}

/// One outbound queue's view, for monitoring.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueInfo {
    pub remote: String,
    pub local: String,
    pub state: &'static str,
    pub pending: usize,
    pub sent: u64,
    pub bounced: u64,
}

/// The registry lists its outbound queues.
#[derive(actix::Message)]
#[rtype(result = "Vec<Recipient<QueueState>>")]
pub struct ListQueues;

/// Ask a queue for its state.
#[derive(actix::Message)]
#[rtype(result = "QueueInfo")]
pub struct QueueState;

/// The handle an outbound queue is reached by.
#[derive(Clone)]
pub struct OutboundRef {
    pub send: Recipient<ToOutbound>,
    pub state: Recipient<QueueState>,
}

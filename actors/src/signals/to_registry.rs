//! What actors send the registry, and the handle they reach it by.

use super::Signal;
use super::to_account::AccountRef;
use super::to_session::SessionRef;
use actix::prelude::*;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use xmpp_parsers::jid::{BareJid, FullJid};

/// A signal a client's session could not deliver on its direct path, with the
/// session's count of such signals not yet routed. The registry lowers the count once
/// the signal is in its recipient's mailbox (or answered): until then the session
/// sends everything through here too, so a later signal on the direct path cannot
/// overtake an earlier one (RFC 6120 §10.1: in order between two entities).
/// `backlog` counts the session's signals that wait for a busy account: the session
/// reads nothing more from its client while it is not clear.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct FromSession {
    pub sig: Signal,
    pub pending: Arc<AtomicUsize>,
    pub backlog: Arc<super::backlog::Backlog>,
}

/// Resource binding (RFC 6120 §7).
#[derive(actix::Message)]
#[rtype(result = "Result<(FullJid, AccountRef), BindError>")]
pub struct Bind {
    pub bare: BareJid,
    /// The resource the client asked for (already resourceprep'd), if any.
    pub resource: Option<String>,
    /// Refuse instead of generating a new resource on conflict (legacy auth).
    pub exact: bool,
    pub session: SessionRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("the resource is in use")]
    Conflict,
    #[error("too many sessions for this account")]
    TooManySessions,
    #[error("the server is not ready")]
    Unavailable,
}

/// A session ended: forget its route.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Unbind {
    pub jid: FullJid,
    pub session: SessionRef,
}

/// A session's presence changed (initial presence, priority, unavailable).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Availability {
    pub jid: FullJid,
    pub available: bool,
    pub priority: i8,
}

/// The configuration was reloaded: the hosted domains and the configured trusted
/// components (domain and secret). Attached components whose domain is now hosted or
/// whose entry is gone are dismissed with `host-gone`, those whose secret changed with
/// `not-authorized`.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct SetDomains {
    pub local: Vec<String>,
    pub components: Vec<(String, String)>,
}

impl SetDomains {
    /// What the registry needs of `settings`.
    pub fn from_settings(s: &xmppd_proto::config::Settings) -> Self {
        SetDomains {
            local: s.domains.iter().map(|d| d.name.clone()).collect(),
            components: s
                .components
                .iter()
                .map(|c| (c.name.clone(), c.secret.clone()))
                .collect(),
        }
    }
}

/// One row of the session list (monitoring, tests).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub jid: String,
    pub available: bool,
    pub priority: i8,
}

#[derive(actix::Message)]
#[rtype(result = "Vec<SessionInfo>")]
pub struct ListSessions;

/// An account actor with nothing to do asks to be forgotten; the answer says whether
/// it may stop (no session bound meanwhile, and it is still the registered one).
#[derive(actix::Message)]
#[rtype(result = "bool")]
pub struct AccountIdle {
    pub bare: BareJid,
    pub addr: AccountRef,
}

/// Hand a message to the account actor of `bare`, started if it is not running (an
/// administrator's command for that account).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct ForAccount {
    pub bare: BareJid,
    pub msg: super::ToAccount,
}

/// Remove the account `bare` (WebAdmin); `done` is answered once the delete committed
/// (or failed: `NotFound` when there is no such account).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct RemoveAccount {
    pub bare: BareJid,
    pub done: tokio::sync::oneshot::Sender<Result<(), crate::storage::StorageError>>,
}

/// The registry's address, one recipient per message kind.
#[derive(Clone)]
pub struct RegistryRef {
    pub signal: Recipient<Signal>,
    pub from_session: Recipient<FromSession>,
    pub bind: Recipient<Bind>,
    pub unbind: Recipient<Unbind>,
    pub availability: Recipient<Availability>,
    pub set_domains: Recipient<SetDomains>,
    pub list_sessions: Recipient<ListSessions>,
    pub account_idle: Recipient<AccountIdle>,
    pub for_account: Recipient<ForAccount>,
    pub attach_component: Recipient<AttachComponent>,
    pub detach_service: Recipient<DetachService>,
    pub dialback_verify: Recipient<super::to_outbound::DialbackVerify>,
    pub list_queues: Recipient<super::to_outbound::ListQueues>,
    pub outbound_idle: Recipient<super::to_outbound::OutboundIdle>,
    pub remove_account: Recipient<RemoveAccount>,
}

impl RegistryRef {
    /// Route a signal (internal senders: never held back).
    pub fn route(&self, sig: Signal) {
        self.signal.do_send(sig)
    }
}

/// Why a service could not be attached to its domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    #[error("the domain is hosted here")]
    Hosted,
    #[error("another service serves the domain")]
    Taken,
    /// The component is not (or no longer) configured.
    #[error("no such component is configured")]
    Unknown,
    /// The secret it proved is not the one configured now (changed by a reload while
    /// it was handshaking).
    #[error("the component's secret changed")]
    SecretChanged,
}

/// A trusted component authenticated: attach it to its domain, so that every signal
/// for the domain or any JID in it goes to `signals`. With `replace`, a component
/// already attached there is told [`Dismiss`]`(`[`Dismissal::Replaced`]`)` and
/// detached; without, the attach is refused ([`AttachError::Taken`]). `secret` is the
/// one the component proved: it must still be the configured one.
#[derive(actix::Message)]
#[rtype(result = "Result<(), AttachError>")]
pub struct AttachComponent {
    pub domain: String,
    pub secret: String,
    pub signals: Recipient<Signal>,
    pub dismiss: Recipient<Dismiss>,
    pub replace: bool,
}

/// A service leaves its domain (only the one attached can detach itself).
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct DetachService {
    pub domain: String,
    pub signals: Recipient<Signal>,
}

/// Why an attached service was detached by the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dismissal {
    /// Another connection for its domain took its place (`conflict`).
    Replaced,
    /// Its domain is hosted now, or its configuration entry is gone (`host-gone`).
    HostGone,
    /// Its secret changed (`not-authorized`).
    SecretChanged,
}

/// Sent to a service the registry detached: it no longer serves its domain, and hands
/// what still reaches it back to the registry.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub struct Dismiss(pub Dismissal);

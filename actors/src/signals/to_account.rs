//! What actors send an account actor, and the handle they reach it by.

use super::Signal;
use super::to_session::SessionRef;
use minidom::Element;

/// Everything an account actor is sent.
#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
pub enum ToAccount {
    /// A signal for the account's bare JID (subscriptions, probes, iq, messages to store).
    Signal(Signal),
    /// A session of this account came up.
    Attach {
        resource: String,
        session: SessionRef,
        /// The session's stream runs TLS (a password sent in-band in the clear follows
        /// SASL PLAIN's rule).
        tls: bool,
        /// When the stream authenticated with the account's stored credentials;
        /// `None` for an anonymous session. The account refuses a session whose
        /// account is gone, or was removed after this.
        authenticated_at: Option<std::time::Instant>,
    },
    /// A session ended (its presence becomes unavailable, RFC 6121 §4.5.3).
    Detach { resource: String },
    /// Presence or an own-account iq from one of the user's resources.
    FromClient { resource: String, stanza: Element },
    /// An administrator deletes the account (WebAdmin, service administration): the
    /// same removal as XEP-0077 `<remove/>` — stored data deleted, subscriptions
    /// cancelled both ways, every session closed — answered once the delete committed.
    Remove {
        done: tokio::sync::oneshot::Sender<Result<(), RemoveError>>,
    },
}

/// Why an administrator's removal of an account failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    #[error("no such account")]
    NotFound,
    #[error("the account is busy: try again")]
    Busy,
    #[error("storage failed: {0}")]
    Storage(String),
}

/// The handle a account actor is reached by.
pub type AccountRef = super::handle::Handle<ToAccount>;

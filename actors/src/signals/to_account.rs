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
    /// An administrator removes the account (XEP-0133 delete-user): the removal of
    /// XEP-0077 `<remove/>` (subscriptions cancelled, every session closed). `done`
    /// gets the outcome: `NotFound` when there is no such account.
    Remove {
        done: tokio::sync::oneshot::Sender<Result<(), crate::storage::StorageError>>,
    },
}

/// The handle a account actor is reached by.
pub type AccountRef = super::handle::Handle<ToAccount>;

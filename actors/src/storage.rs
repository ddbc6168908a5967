//! Durable state behind a backend trait; the daemon supplies the SQLite backend.
//!
//! Backends are synchronous (SQLite is); [`Storage`] runs their calls on the blocking
//! thread pool so that no actor thread ever waits on the disk.

use std::sync::Arc;
use xmppd_proto::auth::scram::Credentials;
use xmppd_proto::im::roster::Item;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StorageError {
    #[error("the account already exists")]
    Exists,
    #[error("no such account")]
    NotFound,
    #[error("storage backend: {0}")]
    Backend(String),
    #[error("storage task was cancelled")]
    Cancelled,
    /// A per-account quota (offline messages) is reached. A write that returns it
    /// has written nothing (the writer commits the rest of its batch around it).
    #[error("storage quota reached")]
    Full,
}

/// An account's roster as stored: items, version, and subscription requests waiting
/// for an answer (pending in), with the request stanza to deliver again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosterData {
    pub ver: u64,
    pub items: Vec<Item>,
    pub pending_in: Vec<(String, String)>,
}

/// The outcome of a write queued without waiting ([`Backend::offline_try_queue`]),
/// answered once its transaction committed (or failed).
pub type Ack = tokio::sync::oneshot::Receiver<Result<(), StorageError>>;

/// An [`Ack`] that already holds its outcome.
pub fn ready(r: Result<(), StorageError>) -> Ack {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(r);
    rx
}

/// What a storage backend offers the engine.
pub trait Backend: Send + Sync + 'static {
    fn credentials(&self, domain: &str, user: &str) -> Result<Option<Credentials>, StorageError>;
    /// Fails with [`StorageError::Exists`] when the account is there already.
    fn create_account(
        &self,
        domain: &str,
        user: &str,
        creds: &Credentials,
    ) -> Result<(), StorageError>;
    /// Fails with [`StorageError::NotFound`] for an unknown account.
    fn set_credentials(
        &self,
        domain: &str,
        user: &str,
        creds: &Credentials,
    ) -> Result<(), StorageError>;
    /// Removes the account and everything stored for it.
    fn delete_account(&self, domain: &str, user: &str) -> Result<(), StorageError>;
    fn list_accounts(&self, domain: &str) -> Result<Vec<String>, StorageError>;
    /// The SCRAM iteration count most stored accounts have (`None`: no account). An
    /// unknown user's decoy credentials use it, so that `i=` in a SCRAM challenge does
    /// not tell accounts made with an older setting from names that have none.
    fn iterations_in_use(&self) -> Result<Option<u32>, StorageError> {
        Ok(None)
    }
    fn account_exists(&self, domain: &str, user: &str) -> Result<bool, StorageError> {
        Ok(self.credentials(domain, user)?.is_some())
    }

    fn roster_load(&self, domain: &str, user: &str) -> Result<RosterData, StorageError>;
    /// Insert or replace one item and set the roster version.
    fn roster_put(
        &self,
        domain: &str,
        user: &str,
        item: &Item,
        ver: u64,
    ) -> Result<(), StorageError>;
    /// Remove one item (and its pending request) and set the roster version.
    fn roster_remove(
        &self,
        domain: &str,
        user: &str,
        jid: &str,
        ver: u64,
    ) -> Result<(), StorageError>;
    /// Record (`Some(stanza)`) or clear (`None`) a pending inbound subscription request.
    fn pending_in(
        &self,
        domain: &str,
        user: &str,
        contact: &str,
        stanza: Option<&str>,
    ) -> Result<(), StorageError>;

    /// Store a message for later delivery; [`StorageError::Full`] beyond `limit` messages.
    fn offline_push(
        &self,
        domain: &str,
        user: &str,
        stanza: &str,
        limit: usize,
    ) -> Result<(), StorageError>;
    /// Queue a message for storage without waiting for its commit, when the backend's
    /// write queue has room; never blocks (an actor may call it). Messages queued one
    /// after another commit in that order; the [`Ack`] answers after the commit, as
    /// [`Backend::offline_push`] would. `None`: nothing queued (the queue is full, or the
    /// backend does not queue): use [`Backend::offline_queue`] from the blocking pool.
    fn offline_try_queue(
        &self,
        _domain: &str,
        _user: &str,
        _stanza: &str,
        _limit: usize,
    ) -> Option<Ack> {
        None
    }
    /// [`Backend::offline_try_queue`] that waits for room in the queue (blocks: call it
    /// on the blocking pool). By default the message is stored before it returns.
    fn offline_queue(&self, domain: &str, user: &str, stanza: &str, limit: usize) -> Ack {
        ready(self.offline_push(domain, user, stanza, limit))
    }
    /// Whether any message is stored for the account.
    fn offline_waiting(&self, domain: &str, user: &str) -> Result<bool, StorageError>;
    /// Stored messages in arrival order, with their ids.
    fn offline_list(&self, domain: &str, user: &str) -> Result<Vec<(i64, String)>, StorageError>;
    /// Delete stored messages up to and including `last_id`.
    fn offline_delete(&self, domain: &str, user: &str, last_id: i64) -> Result<(), StorageError>;

    /// Per-account XML documents: vCard (`vcard-temp`), private XML (`private:NS`).
    fn document_get(
        &self,
        domain: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<String>, StorageError>;
    fn document_set(
        &self,
        domain: &str,
        user: &str,
        key: &str,
        xml: &str,
    ) -> Result<(), StorageError>;

    /// Every document of the account as (key, xml), keys in order (export).
    fn document_list(
        &self,
        domain: &str,
        user: &str,
    ) -> Result<Vec<(String, String)>, StorageError>;

    fn blocklist_get(&self, domain: &str, user: &str) -> Result<Vec<String>, StorageError>;
    fn blocklist_set(&self, domain: &str, user: &str, jids: &[String]) -> Result<(), StorageError>;

    /// A persistent chat room as saved (JSON of `muc::room::Saved`), by room JID.
    fn room_get(&self, jid: &str) -> Result<Option<String>, StorageError>;
    /// Insert or replace a persistent room of `service`.
    fn room_set(&self, service: &str, jid: &str, data: &str) -> Result<(), StorageError>;
    /// Removes the room and its stored history.
    fn room_delete(&self, jid: &str) -> Result<(), StorageError>;
    /// A persistent room's stored history (`muc::history::Stored`: seq, Unix time,
    /// stanza), oldest first.
    fn room_history(&self, jid: &str) -> Result<Vec<(u64, u64, String)>, StorageError>;
    /// Add messages to a saved room's history (one transaction; a seq already stored is
    /// replaced; nothing when the room is not saved), then keep only its newest `keep`.
    fn room_history_add(
        &self,
        jid: &str,
        messages: Vec<(u64, u64, String)>,
        keep: usize,
    ) -> Result<(), StorageError>;
    /// Every persistent room of a service as (JID, data), by JID.
    fn room_list(&self, service: &str) -> Result<Vec<(String, String)>, StorageError>;

    /// Counters for the monitoring page (name, value); none by default.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// Cloneable handle to the backend.
#[derive(Clone)]
pub struct Storage(Arc<dyn Backend>);

impl Storage {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Storage(backend)
    }

    /// Run `f` on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StorageError>
    where
        R: Send + 'static,
        F: FnOnce(&dyn Backend) -> Result<R, StorageError> + Send + 'static,
    {
        let b = self.0.clone();
        tokio::task::spawn_blocking(move || f(&*b))
            .await
            .map_err(|_| StorageError::Cancelled)?
    }

    /// New SCRAM keys for `password` (fresh salt, the configured iterations, the plain
    /// text kept where the configured password format says so), derived on the blocking pool among the bounded derivations
    /// (`stream::derivation_permit`), then the account created (`create`: `Exists` when
    /// it is there) or its keys replaced. The one path of in-band registration, the
    /// in-band password change and the administration commands.
    pub async fn store_password(
        &self,
        domain: String,
        user: String,
        password: String,
        auth: &xmppd_proto::config::AuthSettings,
        create: bool,
    ) -> Result<(), StorageError> {
        let iterations = auth.scram_iterations;
        let keep_plain = auth.password_format == xmppd_proto::config::PasswordFormat::Plain;
        let _permit = crate::stream::derivation_permit().await;
        self.run(move |b| {
            let creds = Credentials::derive(&password, iterations, keep_plain);
            if create {
                b.create_account(&domain, &user, &creds)
            } else {
                b.set_credentials(&domain, &user, &creds)
            }
        })
        .await
    }

    /// Direct access for code that is already off the actor threads (CLI, tests).
    pub fn backend(&self) -> &dyn Backend {
        &*self.0
    }
}

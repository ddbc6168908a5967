//! Durable state behind a backend trait; the daemon supplies the SQLite backend.
//!
//! Backends are synchronous (SQLite is); [`Storage`] runs their calls on the blocking
//! thread pool so that no actor thread ever waits on the disk.

use crate::scram::Credentials;
use std::sync::Arc;

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
    fn account_exists(&self, domain: &str, user: &str) -> Result<bool, StorageError> {
        Ok(self.credentials(domain, user)?.is_some())
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

    /// Direct access for code that is already off the actor threads (CLI, tests).
    pub fn backend(&self) -> &dyn Backend {
        &*self.0
    }
}

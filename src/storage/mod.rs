//! The daemon's storage backends behind the engine's [`Backend`] trait: embedded SQLite
//! (the default) and PostgreSQL. Both send every write through one writer thread per
//! database with group commit ([`writer`]); both create and migrate their schema
//! themselves ([`migrations`]).

mod migrations;
pub mod pool;
pub mod postgres;
pub mod sqlite;
pub mod writer;
pub mod xep0227;

pub use sqlite::Sqlite;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use writer::{WriterLimits, WriterStats};
use xmppd_actors::storage::{Backend, StorageError};
use xmppd_proto::config::{Settings, StorageBackend};

/// A backend the daemon opened: the engine's interface plus shutdown.
pub trait Store: Backend {
    /// Finish the queued writes and leave the database tidy (at shutdown).
    fn flush(&self) -> Result<(), StorageError>;
}

impl Store for Sqlite {
    fn flush(&self) -> Result<(), StorageError> {
        Sqlite::flush(self)
    }
}

impl Store for postgres::Postgres {
    fn flush(&self) -> Result<(), StorageError> {
        postgres::Postgres::flush(self)
    }
}

/// Where the SQLite database lives.
pub fn database_path(s: &Settings) -> PathBuf {
    if s.storage.database.is_absolute() {
        s.storage.database.clone()
    } else {
        s.data_dir.join(&s.storage.database)
    }
}

pub fn limits(s: &Settings) -> WriterLimits {
    WriterLimits {
        queue: s.storage.write_queue,
        batch: s.storage.write_batch,
    }
}

/// Open the configured backend (creating and migrating its schema).
pub fn open(s: &Settings, log: slog::Logger) -> Result<Arc<dyn Store>, StorageError> {
    match s.storage.backend {
        StorageBackend::Sqlite => Ok(Arc::new(Sqlite::open(
            &database_path(s),
            s.storage.read_connections,
            limits(s),
            log,
        )?)),
        StorageBackend::Postgres => Ok(Arc::new(postgres::Postgres::open(
            &s.storage.postgres_url,
            s.storage.read_connections,
            limits(s),
            log,
        )?)),
    }
}

/// The writer's counters as `/stats` shows them.
pub fn writer_stats(w: &WriterStats) -> Vec<(&'static str, u64)> {
    vec![
        ("storage_writes", w.writes.load(Ordering::Relaxed)),
        ("storage_commits", w.commits.load(Ordering::Relaxed)),
        ("storage_errors", w.errors.load(Ordering::Relaxed)),
        ("storage_pending", w.pending.load(Ordering::Relaxed) as u64),
        (
            "storage_failing",
            u64::from(w.failing.load(Ordering::Relaxed)),
        ),
    ]
}

/// A logger that drops everything (command-line tools, tests).
pub fn quiet() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

#[cfg(test)]
pub mod conformance;
/// The test PostgreSQL server the integration tests use too.
#[cfg(test)]
#[path = "../../tests/common/postgres.rs"]
pub mod pg_server;

/// Owned copies of an account's domain and user, for a write sent to the writer thread.
pub(crate) fn own(domain: &str, user: &str) -> (String, String) {
    (domain.to_owned(), user.to_owned())
}

/// The per-account offline limit as the SQL parameter both backends compare the kept
/// count with; a limit of 0 stores nothing.
pub(crate) fn offline_limit(limit: usize) -> Result<i64, StorageError> {
    match i64::try_from(limit).unwrap_or(i64::MAX) {
        0 => Err(StorageError::Full),
        n => Ok(n),
    }
}

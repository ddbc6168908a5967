//! The embedded SQLite storage backend.
//!
//! WAL journal with `synchronous = FULL`: a write the server acknowledged survives a
//! crash of the process and of the machine. Connections are pooled; SQLite serialises
//! writers itself (busy timeout 5 s).

use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use xmppd_actors::scram::{Credentials, ScramKeys};
use xmppd_actors::storage::{Backend, StorageError};

/// Schema migrations, applied in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &["CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        salt BLOB NOT NULL,
        iterations INTEGER NOT NULL,
        sha1_stored BLOB NOT NULL,
        sha1_server BLOB NOT NULL,
        sha256_stored BLOB NOT NULL,
        sha256_server BLOB NOT NULL,
        password TEXT,
        created INTEGER NOT NULL DEFAULT (strftime('%s','now')),
        PRIMARY KEY (domain, username)
    ) WITHOUT ROWID;"];

pub struct Sqlite {
    path: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

fn db_err(e: rusqlite::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

impl Sqlite {
    /// Open (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Sqlite, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StorageError::Backend(format!("{}: {e}", dir.display())))?;
        }
        let s = Sqlite {
            path: path.to_path_buf(),
            pool: Mutex::new(Vec::new()),
        };
        let conn = s.connect()?;
        migrate(&conn)?;
        s.give_back(conn);
        Ok(s)
    }

    fn connect(&self) -> Result<Connection, StorageError> {
        let c = Connection::open(&self.path)
            .map_err(|e| StorageError::Backend(format!("{}: {e}", self.path.display())))?;
        c.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db_err)?;
        c.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(db_err)?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        if let Ok(mut p) = self.pool.lock()
            && p.len() < 8
        {
            p.push(c);
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let pooled = self.pool.lock().ok().and_then(|mut p| p.pop());
        let c = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let r = f(&c);
        self.give_back(c);
        r
    }

    /// Checkpoint the WAL into the main file (at shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.with(|c| {
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(db_err)
        })
    }
}

fn migrate(c: &Connection) -> Result<(), StorageError> {
    let done: usize = c
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_err)? as usize;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
        c.execute_batch(&format!(
            "BEGIN; {m} PRAGMA user_version = {}; COMMIT;",
            i + 1
        ))
        .map_err(db_err)?;
    }
    Ok(())
}

fn row_to_creds(r: &rusqlite::Row<'_>) -> rusqlite::Result<Credentials> {
    Ok(Credentials {
        salt: r.get(0)?,
        iterations: r.get(1)?,
        sha1: ScramKeys {
            stored_key: r.get(2)?,
            server_key: r.get(3)?,
        },
        sha256: ScramKeys {
            stored_key: r.get(4)?,
            server_key: r.get(5)?,
        },
        plain: r.get(6)?,
    })
}

impl Backend for Sqlite {
    fn credentials(&self, domain: &str, user: &str) -> Result<Option<Credentials>, StorageError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT salt, iterations, sha1_stored, sha1_server, sha256_stored, sha256_server, password
                 FROM accounts WHERE domain = ?1 AND username = ?2",
            )
            .and_then(|mut st| st.query_row(params![domain, user], row_to_creds).optional())
            .map_err(db_err)
        })
    }

    fn create_account(
        &self,
        domain: &str,
        user: &str,
        k: &Credentials,
    ) -> Result<(), StorageError> {
        self.with(|c| {
            let r = c.execute(
                "INSERT INTO accounts (domain, username, salt, iterations, sha1_stored, sha1_server, sha256_stored, sha256_server, password)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    domain,
                    user,
                    k.salt,
                    k.iterations,
                    k.sha1.stored_key,
                    k.sha1.server_key,
                    k.sha256.stored_key,
                    k.sha256.server_key,
                    k.plain
                ],
            );
            match r {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    Err(StorageError::Exists)
                }
                Err(e) => Err(db_err(e)),
            }
        })
    }

    fn set_credentials(
        &self,
        domain: &str,
        user: &str,
        k: &Credentials,
    ) -> Result<(), StorageError> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE accounts SET salt = ?3, iterations = ?4, sha1_stored = ?5, sha1_server = ?6,
                     sha256_stored = ?7, sha256_server = ?8, password = ?9 WHERE domain = ?1 AND username = ?2",
                    params![
                        domain,
                        user,
                        k.salt,
                        k.iterations,
                        k.sha1.stored_key,
                        k.sha1.server_key,
                        k.sha256.stored_key,
                        k.sha256.server_key,
                        k.plain
                    ],
                )
                .map_err(db_err)?;
            if n == 0 { Err(StorageError::NotFound) } else { Ok(()) }
        })
    }

    fn delete_account(&self, domain: &str, user: &str) -> Result<(), StorageError> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM accounts WHERE domain = ?1 AND username = ?2",
                    params![domain, user],
                )
                .map_err(db_err)?;
            if n == 0 {
                Err(StorageError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    fn list_accounts(&self, domain: &str) -> Result<Vec<String>, StorageError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached("SELECT username FROM accounts WHERE domain = ?1 ORDER BY username")
                .map_err(db_err)?;
            let rows = st
                .query_map(params![domain], |r| r.get::<_, String>(0))
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db").join("x.sqlite");
        let db = Sqlite::open(&path).expect("open");
        let creds = Credentials::derive("pw", 64, false);
        db.create_account("a.test", "alice", &creds)
            .expect("create");
        assert_eq!(
            db.create_account("a.test", "alice", &creds),
            Err(StorageError::Exists)
        );
        assert_eq!(
            db.credentials("a.test", "alice").expect("get"),
            Some(creds.clone())
        );
        assert_eq!(db.credentials("b.test", "alice").expect("get"), None);
        drop(db);
        let db = Sqlite::open(&path).expect("reopen");
        assert_eq!(
            db.list_accounts("a.test").expect("list"),
            vec!["alice".to_string()]
        );
        let new = Credentials::derive("pw2", 64, true);
        db.set_credentials("a.test", "alice", &new).expect("passwd");
        assert!(
            db.credentials("a.test", "alice")
                .expect("get")
                .is_some_and(|c| c.verify_password("pw2"))
        );
        assert_eq!(
            db.set_credentials("a.test", "bob", &new),
            Err(StorageError::NotFound)
        );
        db.delete_account("a.test", "alice").expect("del");
        assert_eq!(
            db.delete_account("a.test", "alice"),
            Err(StorageError::NotFound)
        );
    }
}

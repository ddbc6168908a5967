//! The embedded SQLite storage backend.
//!
//! WAL journal with `synchronous = FULL`: a write the server acknowledged survives a
//! crash of the process and of the machine. Every write goes through the one writer
//! thread ([`super::writer`]), which commits what arrives together in one transaction
//! (`BEGIN IMMEDIATE`); reads run concurrently on pooled read-only connections, which
//! WAL lets read beside the writer.

mod rooms;

use super::migrations::{ACCOUNT_TABLES, SQLITE as MIGRATIONS};
use super::own;
use super::pool::Pool;
use super::writer::{WriteConn, Writer, WriterLimits};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use xmppd_actors::storage::{Ack, Backend, RosterData, StorageError};
use xmppd_proto::auth::scram::{Credentials, ScramKeys};
use xmppd_proto::im::roster::{Item, Sub};

pub struct Sqlite {
    path: PathBuf,
    readers: Pool<Connection>,
    writer: Writer<Connection>,
}

fn db_err(e: rusqlite::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

impl WriteConn for Connection {
    fn begin(&mut self) -> Result<(), StorageError> {
        self.execute_batch("BEGIN IMMEDIATE").map_err(db_err)
    }
    fn commit(&mut self) -> Result<(), StorageError> {
        self.execute_batch("COMMIT").map_err(db_err)
    }
    fn rollback(&mut self) {
        if !self.is_autocommit() {
            let _ = self.execute_batch("ROLLBACK");
        }
    }
    fn savepoint(&mut self) -> Result<(), StorageError> {
        self.execute_batch("SAVEPOINT w").map_err(db_err)
    }
    fn release(&mut self) -> Result<(), StorageError> {
        self.execute_batch("RELEASE w").map_err(db_err)
    }
    fn rollback_to(&mut self) -> Result<(), StorageError> {
        self.execute_batch("ROLLBACK TO w").map_err(db_err)
    }
    fn in_transaction(&self) -> bool {
        !self.is_autocommit()
    }
}

/// The database holds SCRAM keys (and passwords with `password_format = "plain"`): it
/// and its -wal and -shm files are readable by the daemon's user only. The file is
/// created here with mode 0600 so that SQLite gives its journal files the same mode; an
/// existing one that others may read is tightened.
fn private_files(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |p: &Path, e: std::io::Error| StorageError::Backend(format!("{}: {e}", p.display()));
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| err(path, e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let p = Path::new(&name);
        let Ok(meta) = std::fs::metadata(p) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| err(p, e))?;
        }
    }
    Ok(())
}

fn connect(path: &Path) -> Result<Connection, StorageError> {
    let c = Connection::open(path)
        .map_err(|e| StorageError::Backend(format!("{}: {e}", path.display())))?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(db_err)?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -1024;",
    )
    .map_err(db_err)?;
    Ok(c)
}

impl Sqlite {
    /// Open (creating and migrating as needed) the database at `path`, with at most
    /// `readers` read connections.
    pub fn open(
        path: &Path,
        readers: usize,
        limits: WriterLimits,
        log: slog::Logger,
    ) -> Result<Sqlite, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.exists()
        {
            // a directory we make for the database is the daemon's alone
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StorageError::Backend(format!("{}: {e}", dir.display())))?;
        }
        private_files(path)?;
        let w = connect(path)?;
        migrate(&w)?;
        Ok(Sqlite {
            path: path.to_path_buf(),
            readers: Pool::new(readers),
            writer: Writer::start("sqlite", w, limits, log),
        })
    }

    /// Run a read on a pooled read-only connection.
    fn with<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StorageError>,
    ) -> Result<R, StorageError> {
        let open = || {
            let c = connect(&self.path)?;
            c.execute_batch("PRAGMA query_only = ON").map_err(db_err)?;
            Ok(c)
        };
        self.readers.with(open, |c| (f(c), true))?
    }

    /// Run a write on the writer; returns once it is committed.
    fn write(
        &self,
        mut f: impl FnMut(&Connection) -> Result<(), StorageError> + Send + 'static,
    ) -> Result<(), StorageError> {
        self.writer.write(move |c| f(c))
    }

    /// Finish the queued writes and checkpoint the WAL into the main file (at shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.writer.stop();
        self.with(|c| {
            c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(db_err)
        })
    }
}

/// Store one offline message (a write for the writer thread): the account's count goes
/// up only while under the limit; count and message are written in the writer's
/// transaction, so no other write comes between them.
fn offline_push_job(
    domain: &str,
    user: &str,
    stanza: &str,
    limit: usize,
) -> Result<impl Fn(&Connection) -> Result<(), StorageError> + Send + 'static, StorageError> {
    let ((domain, user), stanza) = (own(domain, user), stanza.to_owned());
    let limit = super::offline_limit(limit)?;
    Ok(move |c: &Connection| {
        let counted: Option<i64> = c
            .prepare_cached(
                "INSERT INTO offline_count (domain, username, n) VALUES (?1, ?2, 1)
                 ON CONFLICT (domain, username) DO UPDATE SET n = n + 1 WHERE n < ?3
                 RETURNING n",
            )
            .and_then(|mut st| {
                st.query_row(params![domain, user, limit], |r| r.get(0))
                    .optional()
            })
            .map_err(db_err)?;
        if counted.is_none() {
            return Err(StorageError::Full);
        }
        c.prepare_cached("INSERT INTO offline (domain, username, stanza) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(params![domain, user, stanza]))
            .map(|_| ())
            .map_err(db_err)
    })
}

/// [`offline_push_job`] as a job for the writer.
fn offline_job(
    domain: &str,
    user: &str,
    stanza: &str,
    limit: usize,
) -> Result<impl FnMut(&mut Connection) -> Result<(), StorageError> + Send + 'static, StorageError>
{
    offline_push_job(domain, user, stanza, limit).map(|job| move |c: &mut Connection| job(c))
}

fn migrate(c: &Connection) -> Result<(), StorageError> {
    let done: usize = c
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(db_err)? as usize;
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done) {
        c.execute_batch(&format!(
            "BEGIN IMMEDIATE; {m} PRAGMA user_version = {}; COMMIT;",
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

/// Owned copies of the arguments a write job needs (jobs outlive the call's borrows).
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
        let ((domain, user), k) = (own(domain, user), k.clone());
        self.write(move |c| {
            let r = c
                .prepare_cached(
                    "INSERT INTO accounts (domain, username, salt, iterations, sha1_stored, sha1_server, sha256_stored, sha256_server, password)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        domain,
                        user,
                        k.salt,
                        k.iterations,
                        k.sha1.stored_key,
                        k.sha1.server_key,
                        k.sha256.stored_key,
                        k.sha256.server_key,
                        k.plain
                    ])
                });
            match r {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
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
        let ((domain, user), k) = (own(domain, user), k.clone());
        self.write(move |c| {
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
        let (domain, user) = own(domain, user);
        self.write(move |c| {
            let mut n = 0;
            for t in ACCOUNT_TABLES {
                let sql = format!("DELETE FROM {t} WHERE domain = ?1 AND username = ?2");
                n = c.execute(&sql, params![domain, user]).map_err(db_err)?;
            }
            if n == 0 {
                Err(StorageError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    fn roster_load(&self, domain: &str, user: &str) -> Result<RosterData, StorageError> {
        self.with(|c| {
            // one snapshot for items, version and requests
            let tx = c.unchecked_transaction().map_err(db_err)?;
            let items = Sqlite::roster_items(&tx, domain, user).map_err(db_err)?;
            let ver: Option<i64> = tx
                .query_row("SELECT ver FROM roster_version WHERE domain = ?1 AND username = ?2", params![domain, user], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            let mut st = tx
                .prepare_cached("SELECT contact, stanza FROM pending_in WHERE domain = ?1 AND username = ?2 ORDER BY contact")
                .map_err(db_err)?;
            let pending = st
                .query_map(params![domain, user], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            Ok(RosterData { ver: ver.unwrap_or(0) as u64, items, pending_in: pending })
        })
    }

    fn roster_put(
        &self,
        domain: &str,
        user: &str,
        item: &Item,
        ver: u64,
    ) -> Result<(), StorageError> {
        let ((domain, user), item) = (own(domain, user), item.clone());
        self.write(move |c| {
            let groups = serde_json::to_string(&item.groups).unwrap_or_else(|_| "[]".into());
            c.prepare_cached(
                "INSERT INTO roster (domain, username, contact, name, groups, subscription, ask, approved)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (domain, username, contact) DO UPDATE SET name = excluded.name, groups = excluded.groups,
                 subscription = excluded.subscription, ask = excluded.ask, approved = excluded.approved",
            )
            .and_then(|mut st| {
                st.execute(params![domain, user, item.jid, item.name, groups, item.sub.as_str(), item.ask, item.approved])
            })
            .map_err(db_err)?;
            set_version(c, &domain, &user, ver).map_err(db_err)?;
            Ok(())
        })
    }

    fn roster_remove(
        &self,
        domain: &str,
        user: &str,
        jid: &str,
        ver: u64,
    ) -> Result<(), StorageError> {
        let ((domain, user), jid) = (own(domain, user), jid.to_owned());
        self.write(move |c| {
            c.execute(
                "DELETE FROM roster WHERE domain = ?1 AND username = ?2 AND contact = ?3",
                params![domain, user, jid],
            )
            .map_err(db_err)?;
            c.execute(
                "DELETE FROM pending_in WHERE domain = ?1 AND username = ?2 AND contact = ?3",
                params![domain, user, jid],
            )
            .map_err(db_err)?;
            set_version(c, &domain, &user, ver).map_err(db_err)?;
            Ok(())
        })
    }

    fn pending_in(
        &self,
        domain: &str,
        user: &str,
        contact: &str,
        stanza: Option<&str>,
    ) -> Result<(), StorageError> {
        let ((domain, user), contact) = (own(domain, user), contact.to_owned());
        let stanza = stanza.map(str::to_owned);
        self.write(move |c| {
            match &stanza {
                Some(x) => c.execute(
                    "INSERT INTO pending_in (domain, username, contact, stanza) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (domain, username, contact) DO UPDATE SET stanza = excluded.stanza",
                    params![domain, user, contact, x],
                ),
                None => c.execute(
                    "DELETE FROM pending_in WHERE domain = ?1 AND username = ?2 AND contact = ?3",
                    params![domain, user, contact],
                ),
            }
            .map(|_| ())
            .map_err(db_err)
        })
    }

    fn offline_push(
        &self,
        domain: &str,
        user: &str,
        stanza: &str,
        limit: usize,
    ) -> Result<(), StorageError> {
        self.write(offline_push_job(domain, user, stanza, limit)?)
    }

    fn offline_try_queue(
        &self,
        domain: &str,
        user: &str,
        stanza: &str,
        limit: usize,
    ) -> Option<Ack> {
        self.writer
            .try_queue_built(offline_job(domain, user, stanza, limit))
    }

    fn offline_queue(&self, domain: &str, user: &str, stanza: &str, limit: usize) -> Ack {
        self.writer
            .queue_built(offline_job(domain, user, stanza, limit))
    }

    fn offline_waiting(&self, domain: &str, user: &str) -> Result<bool, StorageError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM offline WHERE domain = ?1 AND username = ?2)",
            )
            .and_then(|mut st| st.query_row(params![domain, user], |r| r.get(0)))
            .map_err(db_err)
        })
    }

    fn offline_list(&self, domain: &str, user: &str) -> Result<Vec<(i64, String)>, StorageError> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT id, stanza FROM offline WHERE domain = ?1 AND username = ?2 ORDER BY id").map_err(db_err)?;
            let rows = st.query_map(params![domain, user], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn offline_delete(&self, domain: &str, user: &str, last_id: i64) -> Result<(), StorageError> {
        let (domain, user) = own(domain, user);
        self.write(move |c| {
            c.execute(
                "DELETE FROM offline WHERE domain = ?1 AND username = ?2 AND id <= ?3",
                params![domain, user, last_id],
            )
            .and_then(|_| {
                c.execute(
                    "UPDATE offline_count SET n = (SELECT count(*) FROM offline
                     WHERE domain = ?1 AND username = ?2) WHERE domain = ?1 AND username = ?2",
                    params![domain, user],
                )
            })
            .map(|_| ())
            .map_err(db_err)
        })
    }

    fn document_get(
        &self,
        domain: &str,
        user: &str,
        key: &str,
    ) -> Result<Option<String>, StorageError> {
        self.with(|c| {
            c.query_row(
                "SELECT xml FROM documents WHERE domain = ?1 AND username = ?2 AND key = ?3",
                params![domain, user, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)
        })
    }

    fn document_set(
        &self,
        domain: &str,
        user: &str,
        key: &str,
        xml: &str,
    ) -> Result<(), StorageError> {
        let ((domain, user), key, xml) = (own(domain, user), key.to_owned(), xml.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO documents (domain, username, key, xml) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (domain, username, key) DO UPDATE SET xml = excluded.xml",
                params![domain, user, key, xml],
            )
            .map(|_| ())
            .map_err(db_err)
        })
    }

    fn document_list(
        &self,
        domain: &str,
        user: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT key, xml FROM documents WHERE domain = ?1 AND username = ?2 ORDER BY key",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![domain, user], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn room_get(&self, jid: &str) -> Result<Option<String>, StorageError> {
        self.stored_room_get(jid)
    }

    fn room_set(&self, service: &str, jid: &str, data: &str) -> Result<(), StorageError> {
        self.stored_room_set(service, jid, data)
    }

    fn room_delete(&self, jid: &str) -> Result<(), StorageError> {
        self.stored_room_delete(jid)
    }

    fn room_history(&self, jid: &str) -> Result<Vec<(u64, u64, String)>, StorageError> {
        self.stored_room_history(jid)
    }

    fn room_history_add(
        &self,
        jid: &str,
        messages: Vec<(u64, u64, String)>,
        keep: usize,
    ) -> Result<(), StorageError> {
        self.stored_room_history_add(jid, messages, keep)
    }

    fn room_list(&self, service: &str) -> Result<Vec<(String, String)>, StorageError> {
        self.stored_room_list(service)
    }

    fn blocklist_get(&self, domain: &str, user: &str) -> Result<Vec<String>, StorageError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT jid FROM blocklist WHERE domain = ?1 AND username = ?2 ORDER BY jid",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![domain, user], |r| r.get(0))
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
    }

    fn blocklist_set(&self, domain: &str, user: &str, jids: &[String]) -> Result<(), StorageError> {
        let ((domain, user), jids) = (own(domain, user), jids.to_vec());
        self.write(move |c| {
            c.execute(
                "DELETE FROM blocklist WHERE domain = ?1 AND username = ?2",
                params![domain, user],
            )
            .map_err(db_err)?;
            for j in &jids {
                c.execute(
                    "INSERT OR IGNORE INTO blocklist (domain, username, jid) VALUES (?1, ?2, ?3)",
                    params![domain, user, j],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        super::writer_stats(&self.writer.stats)
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

    fn iterations_in_use(&self) -> Result<Option<u32>, StorageError> {
        self.with(|c| {
            c.query_row(
                "SELECT iterations FROM accounts GROUP BY iterations ORDER BY count(*) DESC LIMIT 1",
                [],
                |r| r.get::<_, u32>(0),
            )
            .optional()
            .map_err(db_err)
        })
    }
}

fn set_version(c: &Connection, domain: &str, user: &str, ver: u64) -> rusqlite::Result<usize> {
    c.execute(
        "INSERT INTO roster_version (domain, username, ver) VALUES (?1, ?2, ?3)
         ON CONFLICT (domain, username) DO UPDATE SET ver = excluded.ver",
        params![domain, user, ver as i64],
    )
}

impl Sqlite {
    fn roster_items(c: &Connection, domain: &str, user: &str) -> rusqlite::Result<Vec<Item>> {
        let mut st = c.prepare_cached(
            "SELECT contact, name, groups, subscription, ask, approved FROM roster WHERE domain = ?1 AND username = ?2 ORDER BY contact",
        )?;
        let rows = st.query_map(params![domain, user], |r| {
            let groups: String = r.get(2)?;
            let sub: String = r.get(3)?;
            Ok(Item {
                jid: r.get(0)?,
                name: r.get(1)?,
                groups: serde_json::from_str(&groups).unwrap_or_default(),
                sub: Sub::parse(&sub).unwrap_or_default(),
                ask: r.get(4)?,
                approved: r.get(5)?,
            })
        })?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests;

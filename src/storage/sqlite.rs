//! The embedded SQLite storage backend.
//!
//! WAL journal with `synchronous = FULL`: a write the server acknowledged survives a
//! crash of the process and of the machine. Every write goes through the one writer
//! thread ([`super::writer`]), which commits what arrives together in one transaction
//! (`BEGIN IMMEDIATE`); reads run concurrently on pooled read-only connections, which
//! WAL lets read beside the writer.

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
        self.with(|c| {
            c.query_row("SELECT data FROM rooms WHERE jid = ?1", params![jid], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db_err)
        })
    }

    fn room_set(&self, service: &str, jid: &str, data: &str) -> Result<(), StorageError> {
        let (service, jid, data) = (service.to_owned(), jid.to_owned(), data.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO rooms (jid, service, data) VALUES (?1, ?2, ?3)
                 ON CONFLICT (jid) DO UPDATE SET service = excluded.service, data = excluded.data",
                params![jid, service, data],
            )
            .map(|_| ())
            .map_err(db_err)
        })
    }

    fn room_delete(&self, jid: &str) -> Result<(), StorageError> {
        let jid = jid.to_owned();
        self.write(move |c| {
            c.execute("DELETE FROM room_history WHERE room = ?1", params![jid])
                .map_err(db_err)?;
            c.execute("DELETE FROM rooms WHERE jid = ?1", params![jid])
                .map(|_| ())
                .map_err(db_err)
        })
    }

    fn room_history(&self, jid: &str) -> Result<Vec<(u64, u64, String)>, StorageError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached(
                    "SELECT seq, at, stanza FROM room_history WHERE room = ?1 ORDER BY seq",
                )
                .map_err(db_err)?;
            let rows = st
                .query_map(params![jid], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get(2)?))
                })
                .map_err(db_err)?;
            rows.map(|r| r.map(|(s, a, x)| (s as u64, a as u64, x)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)
        })
    }

    fn room_history_add(
        &self,
        jid: &str,
        messages: Vec<(u64, u64, String)>,
        keep: usize,
    ) -> Result<(), StorageError> {
        let Some(newest) = messages.iter().map(|m| m.0).max() else {
            return Ok(());
        };
        let jid = jid.to_owned();
        self.write(move |c| {
            let mut st = c
                .prepare_cached(
                    "INSERT INTO room_history (room, seq, at, stanza)
                     SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM rooms WHERE jid = ?1)
                     ON CONFLICT (room, seq) DO UPDATE SET at = excluded.at, stanza = excluded.stanza",
                )
                .map_err(db_err)?;
            for (seq, at, xml) in &messages {
                st.execute(params![jid, *seq as i64, *at as i64, xml])
                    .map_err(db_err)?;
            }
            let oldest_kept = newest.saturating_sub(keep as u64) as i64;
            c.execute(
                "DELETE FROM room_history WHERE room = ?1 AND seq <= ?2",
                params![jid, oldest_kept],
            )
            .map(|_| ())
            .map_err(db_err)
        })
    }

    fn room_list(&self, service: &str) -> Result<Vec<(String, String)>, StorageError> {
        self.with(|c| {
            let mut st = c
                .prepare_cached("SELECT jid, data FROM rooms WHERE service = ?1 ORDER BY jid")
                .map_err(db_err)?;
            let rows = st
                .query_map(params![service], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(db_err)
        })
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
mod tests {
    use super::*;
    use crate::storage::{conformance, quiet};
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    const LIMITS: WriterLimits = WriterLimits {
        queue: 64,
        batch: 32,
    };

    fn open(dir: &tempfile::TempDir) -> Sqlite {
        Sqlite::open(&dir.path().join("db").join("x.sqlite"), 4, LIMITS, quiet()).expect("open")
    }

    #[test]
    fn accounts_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(&dir);
        conformance::accounts(&db);
        db.create_account("a.test", "kept", &Credentials::derive("pw", 64, false))
            .expect("create");
        drop(db);
        let db = open(&dir);
        assert_eq!(db.list_accounts("a.test").expect("list"), ["kept"]);
    }

    #[test]
    fn roster_offline_documents_blocklist() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::roster_offline_documents_blocklist(&open(&dir));
    }

    #[test]
    fn rooms() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::rooms(&open(&dir));
    }

    #[test]
    fn offline_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        conformance::offline_queued(&open(&dir));
    }

    #[test]
    fn concurrent_writes_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Arc::new(open(&dir));
        conformance::concurrent_writes_all_succeed(db.clone());
        let stats: std::collections::HashMap<_, _> = db.stats().into_iter().collect();
        assert_eq!(stats["storage_errors"], 8 * 20 - 50, "{stats:?}");
        // group commit: fewer transactions than writes
        assert!(
            stats["storage_commits"] < stats["storage_writes"],
            "{stats:?}"
        );
    }

    /// A writer whose first job holds it until `release` is dropped, so that the
    /// writes sent meanwhile wait together.
    fn held_writer(
        dir: &tempfile::TempDir,
        limits: WriterLimits,
    ) -> (Arc<Writer<Connection>>, std::sync::mpsc::SyncSender<()>) {
        let c = connect(&dir.path().join("w.sqlite")).expect("connect");
        c.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY)")
            .expect("table");
        let w = Arc::new(Writer::start("test", c, limits, quiet()));
        let (release, hold) = std::sync::mpsc::sync_channel::<()>(0);
        let (running, started) = std::sync::mpsc::sync_channel::<()>(1);
        let w2 = w.clone();
        std::thread::spawn(move || {
            w2.write(move |_| {
                let _ = running.try_send(());
                let _ = hold.recv();
                Ok(())
            })
        });
        // the writer runs it (it is out of the queue)
        started.recv().expect("held job started");
        (w, release)
    }

    fn insert(
        w: &Arc<Writer<Connection>>,
        k: i64,
    ) -> std::thread::JoinHandle<Result<(), StorageError>> {
        let w = w.clone();
        std::thread::spawn(move || {
            w.write(move |c| {
                c.execute("INSERT INTO t (k) VALUES (?1)", [k])
                    .map(|_| ())
                    .map_err(db_err)
            })
        })
    }

    #[test]
    fn a_failed_write_fails_alone_in_its_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, release) = held_writer(&dir, LIMITS);
        let first = insert(&w, 1);
        // wait until it is queued, then a duplicate and a neighbour
        while w.stats.pending.load(Ordering::Relaxed) < 2 {
            std::thread::yield_now();
        }
        let dup = insert(&w, 1);
        let other = insert(&w, 2);
        while w.stats.pending.load(Ordering::Relaxed) < 4 {
            std::thread::yield_now();
        }
        drop(release);
        assert_eq!(first.join().expect("join"), Ok(()));
        assert!(dup.join().expect("join").is_err());
        assert_eq!(other.join().expect("join"), Ok(()));
        // the held job's transaction, then one for the three
        assert_eq!(w.stats.commits.load(Ordering::Relaxed), 2);
        assert_eq!(w.stats.writes.load(Ordering::Relaxed), 3);
        assert_eq!(w.stats.errors.load(Ordering::Relaxed), 1);
        let c = connect(&dir.path().join("w.sqlite")).expect("connect");
        let n: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(n, 2);
    }

    /// A write refused by its quota wrote nothing: its batch commits around it, once,
    /// without running the others again.
    #[test]
    fn a_quota_refusal_does_not_rerun_its_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, release) = held_writer(&dir, LIMITS);
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = |k: i64| {
            let runs = runs.clone();
            move |c: &mut Connection| {
                runs.fetch_add(1, Ordering::Relaxed);
                c.execute("INSERT INTO t (k) VALUES (?1)", [k])
                    .map(|_| ())
                    .map_err(db_err)
            }
        };
        let a = w.try_queue(counted(1)).expect("room");
        let full = w
            .try_queue(|_: &mut Connection| Err(StorageError::Full))
            .expect("room");
        let b = w.try_queue(counted(2)).expect("room");
        drop(release);
        assert_eq!(a.blocking_recv().expect("answered"), Ok(()));
        assert_eq!(
            full.blocking_recv().expect("answered"),
            Err(StorageError::Full)
        );
        assert_eq!(b.blocking_recv().expect("answered"), Ok(()));
        assert_eq!(runs.load(Ordering::Relaxed), 2, "the batch ran once");
        // the held job's transaction, then one for the three
        assert_eq!(w.stats.commits.load(Ordering::Relaxed), 2);
        assert_eq!(w.stats.errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_full_queue_makes_writers_wait_not_fail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, release) = held_writer(&dir, WriterLimits { queue: 2, batch: 2 });
        let writers: Vec<_> = (0..20).map(|k| insert(&w, k)).collect();
        // more writers than the queue holds are waiting, none has been answered
        while w.stats.pending.load(Ordering::Relaxed) < 21 {
            std::thread::yield_now();
        }
        assert_eq!(w.stats.errors.load(Ordering::Relaxed), 0);
        drop(release);
        for h in writers {
            assert_eq!(h.join().expect("join"), Ok(()));
        }
        assert_eq!(w.stats.writes.load(Ordering::Relaxed), 21);
    }

    fn insert_job(v: i64) -> impl FnMut(&mut Connection) -> Result<(), StorageError> {
        move |c| {
            c.execute("INSERT INTO o (v) VALUES (?1)", [v])
                .map(|_| ())
                .map_err(db_err)
        }
    }

    /// Writes queued without waiting (an actor's offline messages) commit in the order
    /// queued, many in one transaction; each is answered on its own, a failed one alone;
    /// a full queue takes nothing more from `try_queue` (the caller then waits for room).
    #[test]
    fn queued_writes_commit_in_order_together_and_are_answered_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (w, release) = held_writer(&dir, WriterLimits { queue: 9, batch: 9 });
        let table = w
            .try_queue(|c: &mut Connection| {
                c.execute_batch("CREATE TABLE o (v INTEGER UNIQUE)")
                    .map_err(db_err)
            })
            .expect("room in the queue");
        let mut acks = Vec::new();
        for v in [5, 3, 5, 1, 4, 2, 7, 6] {
            acks.push(w.try_queue(insert_job(v)).expect("room in the queue"));
        }
        assert!(w.try_queue(insert_job(9)).is_none(), "the queue is full");
        drop(release);
        assert_eq!(table.blocking_recv().expect("answered"), Ok(()));
        let outcomes: Vec<_> = acks
            .into_iter()
            .map(|a| a.blocking_recv().expect("answered"))
            .collect();
        assert!(outcomes[2].is_err(), "the duplicate fails: {outcomes:?}");
        assert!(
            outcomes
                .iter()
                .enumerate()
                .all(|(i, r)| i == 2 || r.is_ok()),
            "{outcomes:?}"
        );
        // the held write's transaction, then one for the nine
        assert_eq!(w.stats.commits.load(Ordering::Relaxed), 2);
        assert_eq!(w.stats.pending.load(Ordering::Relaxed), 0);
        // stored in the order queued
        let c = connect(&dir.path().join("w.sqlite")).expect("connect");
        let mut st = c
            .prepare("SELECT v FROM o ORDER BY rowid")
            .expect("prepare");
        let stored: Vec<i64> = st
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(stored, [5, 3, 1, 4, 2, 7, 6]);
        // room again: the blocking form queues too
        let ack = w.queue(insert_job(8));
        assert_eq!(ack.blocking_recv().expect("answered"), Ok(()));
    }
}

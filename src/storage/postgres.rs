//! The PostgreSQL storage backend: the same tables as SQLite's, the same writer with
//! group commit ([`super::writer`]) on one connection, and a pool of read connections.
//!
//! Driver: `postgres`, the synchronous face of `tokio-postgres`; calls arrive on the
//! blocking pool (see `Storage::run`), where waiting on the network is allowed. No TLS:
//! meant for a server on loopback or a private network (use a Unix socket path as
//! `host=` to avoid TCP altogether). Lost connections are opened again on next use.

mod rooms;

use super::migrations::{ACCOUNT_TABLES, POSTGRES as MIGRATIONS};
use super::own;
use super::pool::Pool;
use super::writer::{WriteConn, Writer, WriterLimits};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use xmppd_actors::storage::{Ack, Backend, RosterData, StorageError};
use xmppd_proto::auth::scram::{Credentials, ScramKeys};
use xmppd_proto::im::roster::{Item, Sub};

fn db_err(e: postgres::Error) -> StorageError {
    // the server's own message says most ("relation ... does not exist", "disk full")
    match e.as_db_error() {
        Some(d) => {
            StorageError::Backend(format!("postgres: {} ({})", d.message(), d.code().code()))
        }
        None => StorageError::Backend(format!("postgres: {e}")),
    }
}

fn connect(config: &postgres::Config) -> Result<Client, StorageError> {
    config.connect(NoTls).map_err(db_err)
}

/// The writer's connection, opened again after it was lost.
pub struct PgWrite {
    config: postgres::Config,
    client: Option<Client>,
    /// The writer's frequent statements (the offline insert, the history write),
    /// prepared once per connection (one round trip per write instead of two).
    prepared: Vec<(&'static str, postgres::Statement)>,
}

impl PgWrite {
    fn client(&mut self) -> Result<&mut Client, StorageError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.prepared.clear();
            self.client = Some(connect(&self.config)?);
        }
        self.client
            .as_mut()
            .ok_or_else(|| StorageError::Backend("postgres: not connected".into()))
    }

    /// The connection and `sql` prepared on it (once per connection).
    fn prepared(
        &mut self,
        sql: &'static str,
    ) -> Result<(&mut Client, postgres::Statement), StorageError> {
        self.client()?;
        let c = self
            .client
            .as_mut()
            .ok_or_else(|| StorageError::Backend("postgres: not connected".into()))?;
        let st = match self.prepared.iter().find(|(q, _)| *q == sql) {
            Some((_, st)) => st.clone(),
            None => {
                let st = c.prepare(sql).map_err(db_err)?;
                self.prepared.push((sql, st.clone()));
                st
            }
        };
        Ok((c, st))
    }

    fn exec(&mut self, sql: &str) -> Result<(), StorageError> {
        self.client()?.batch_execute(sql).map_err(db_err)
    }
}

impl WriteConn for PgWrite {
    fn begin(&mut self) -> Result<(), StorageError> {
        // a connection the server closed is found out here; nothing was sent on it yet
        self.exec("BEGIN").or_else(|e| {
            if self.client.as_ref().is_some_and(Client::is_closed) {
                self.exec("BEGIN")
            } else {
                Err(e)
            }
        })
    }
    fn commit(&mut self) -> Result<(), StorageError> {
        self.exec("COMMIT")
    }
    fn rollback(&mut self) {
        if let Some(c) = self.client.as_mut()
            && c.batch_execute("ROLLBACK").is_err()
        {
            self.client = None;
        }
    }
    fn savepoint(&mut self) -> Result<(), StorageError> {
        self.exec("SAVEPOINT w")
    }
    fn release(&mut self) -> Result<(), StorageError> {
        self.exec("RELEASE SAVEPOINT w")
    }
    fn rollback_to(&mut self) -> Result<(), StorageError> {
        self.exec("ROLLBACK TO SAVEPOINT w")
    }
    fn in_transaction(&self) -> bool {
        // PostgreSQL keeps a failed transaction open (aborted) until rolled back; only a
        // lost connection ends it
        self.client.as_ref().is_some_and(|c| !c.is_closed())
    }
}

pub struct Postgres {
    config: postgres::Config,
    readers: Pool<Client>,
    writer: Writer<PgWrite>,
}

impl Postgres {
    /// Connect, create and migrate the schema, start the writer; at most `readers`
    /// read connections besides the writer's.
    pub fn open(
        url: &str,
        readers: usize,
        limits: WriterLimits,
        log: slog::Logger,
    ) -> Result<Postgres, StorageError> {
        let config: postgres::Config = url
            .parse()
            .map_err(|e| StorageError::Backend(format!("storage.postgres_url: {e}")))?;
        let mut client = connect(&config)?;
        migrate(&mut client)?;
        Ok(Postgres {
            writer: Writer::start(
                "postgres",
                PgWrite {
                    config: config.clone(),
                    client: Some(client),
                    prepared: Vec::new(),
                },
                limits,
                log,
            ),
            config,
            readers: Pool::new(readers),
        })
    }

    /// Run a read on a pooled connection; a connection that broke is not kept.
    /// A pooled connection the server closed (it restarted) is only found out on use:
    /// the read is then tried once more on a new connection.
    fn with<R>(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<R, postgres::Error>,
    ) -> Result<R, StorageError> {
        let fresh = std::cell::Cell::new(false);
        let open = || {
            fresh.set(true);
            connect(&self.config)
        };
        self.readers.with(open, |c| {
            let mut r = f(c).map_err(db_err);
            if r.is_err() && c.is_closed() && !fresh.get() {
                r = connect(&self.config).and_then(|n| {
                    *c = n;
                    f(c).map_err(db_err)
                });
            }
            (r, !c.is_closed())
        })?
    }

    fn write(
        &self,
        mut f: impl FnMut(&mut Client) -> Result<(), StorageError> + Send + 'static,
    ) -> Result<(), StorageError> {
        self.writer.write(move |w| f(w.client()?))
    }

    /// Finish the queued writes (at shutdown).
    pub fn flush(&self) -> Result<(), StorageError> {
        self.writer.stop();
        Ok(())
    }
}

/// One offline message in one statement: the account's count goes up only while under
/// the limit, and the message is stored only when it did.
const OFFLINE_INSERT: &str = "WITH counted AS (
        INSERT INTO offline_count (domain, username, n) VALUES ($1, $2, 1)
        ON CONFLICT (domain, username)
        DO UPDATE SET n = offline_count.n + 1 WHERE offline_count.n < $4
        RETURNING n)
     INSERT INTO offline (domain, username, stanza)
        SELECT $1, $2, $3 FROM counted";

/// Store one offline message (a write for the writer thread): one round trip with the
/// statement prepared on the writer's connection.
fn offline_push_job(
    domain: &str,
    user: &str,
    stanza: &str,
    limit: usize,
) -> Result<impl FnMut(&mut PgWrite) -> Result<(), StorageError> + Send + 'static, StorageError> {
    let ((domain, user), stanza) = (own(domain, user), stanza.to_owned());
    let limit = super::offline_limit(limit)?;
    Ok(move |w: &mut PgWrite| {
        let (c, st) = w.prepared(OFFLINE_INSERT)?;
        let stored = c
            .execute(&st, &[&domain, &user, &stanza, &limit])
            .map_err(db_err)?;
        if stored == 0 {
            return Err(StorageError::Full);
        }
        Ok(())
    })
}

fn migrate(c: &mut Client) -> Result<(), StorageError> {
    c.batch_execute("CREATE TABLE IF NOT EXISTS xmppd_schema (version INTEGER NOT NULL)")
        .map_err(db_err)?;
    let mut tx = c.transaction().map_err(db_err)?;
    // one xmppd at a time migrates; the others wait here and find the work done
    tx.batch_execute("LOCK TABLE xmppd_schema IN EXCLUSIVE MODE")
        .map_err(db_err)?;
    let done: i32 = tx
        .query_opt("SELECT version FROM xmppd_schema", &[])
        .map_err(db_err)?
        .map(|r| r.get(0))
        .unwrap_or(0);
    if done == 0 {
        tx.execute("INSERT INTO xmppd_schema (version) VALUES (0)", &[])
            .map_err(db_err)?;
    }
    if done as usize > MIGRATIONS.len() {
        return Err(StorageError::Backend(format!(
            "the database schema is version {done}, newer than this xmppd knows ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(m).map_err(db_err)?;
        tx.execute("UPDATE xmppd_schema SET version = $1", &[&(i as i32 + 1)])
            .map_err(db_err)?;
    }
    tx.commit().map_err(db_err)
}

fn row_to_creds(r: &postgres::Row) -> Result<Credentials, postgres::Error> {
    Ok(Credentials {
        salt: r.try_get(0)?,
        iterations: u32::try_from(r.try_get::<_, i64>(1)?).unwrap_or(u32::MAX),
        sha1: ScramKeys {
            stored_key: r.try_get(2)?,
            server_key: r.try_get(3)?,
        },
        sha256: ScramKeys {
            stored_key: r.try_get(4)?,
            server_key: r.try_get(5)?,
        },
        plain: r.try_get(6)?,
    })
}

fn set_version(c: &mut Client, domain: &str, user: &str, ver: u64) -> Result<(), StorageError> {
    c.execute(
        "INSERT INTO roster_version (domain, username, ver) VALUES ($1, $2, $3)
         ON CONFLICT (domain, username) DO UPDATE SET ver = excluded.ver",
        &[&domain, &user, &(ver as i64)],
    )
    .map(|_| ())
    .map_err(db_err)
}

impl Backend for Postgres {
    fn credentials(&self, domain: &str, user: &str) -> Result<Option<Credentials>, StorageError> {
        self.with(|c| {
            c.query_opt(
                "SELECT salt, iterations, sha1_stored, sha1_server, sha256_stored, sha256_server, password
                 FROM accounts WHERE domain = $1 AND username = $2",
                &[&domain, &user],
            )?
            .map(|r| row_to_creds(&r))
            .transpose()
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
            let r = c.execute(
                "INSERT INTO accounts (domain, username, salt, iterations, sha1_stored, sha1_server, sha256_stored, sha256_server, password)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &domain,
                    &user,
                    &k.salt,
                    &i64::from(k.iterations),
                    &k.sha1.stored_key,
                    &k.sha1.server_key,
                    &k.sha256.stored_key,
                    &k.sha256.server_key,
                    &k.plain,
                ],
            );
            match r {
                Ok(_) => Ok(()),
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(StorageError::Exists),
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
                    "UPDATE accounts SET salt = $3, iterations = $4, sha1_stored = $5, sha1_server = $6,
                     sha256_stored = $7, sha256_server = $8, password = $9 WHERE domain = $1 AND username = $2",
                    &[
                        &domain,
                        &user,
                        &k.salt,
                        &i64::from(k.iterations),
                        &k.sha1.stored_key,
                        &k.sha1.server_key,
                        &k.sha256.stored_key,
                        &k.sha256.server_key,
                        &k.plain,
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
                let sql = format!("DELETE FROM {t} WHERE domain = $1 AND username = $2");
                n = c.execute(&sql, &[&domain, &user]).map_err(db_err)?;
            }
            if n == 0 {
                Err(StorageError::NotFound)
            } else {
                Ok(())
            }
        })
    }

    fn list_accounts(&self, domain: &str) -> Result<Vec<String>, StorageError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT username FROM accounts WHERE domain = $1 ORDER BY username",
                &[&domain],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn iterations_in_use(&self) -> Result<Option<u32>, StorageError> {
        self.with(|c| {
            let row = c.query_opt(
                "SELECT iterations FROM accounts GROUP BY iterations ORDER BY count(*) DESC LIMIT 1",
                &[],
            )?;
            Ok(row.map(|r| u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX)))
        })
    }

    fn roster_load(&self, domain: &str, user: &str) -> Result<RosterData, StorageError> {
        self.with(|c| {
            // one snapshot for items, version and requests
            let mut tx = c.build_transaction().read_only(true).isolation_level(postgres::IsolationLevel::RepeatableRead).start()?;
            let items = tx
                .query(
                    "SELECT contact, name, groups, subscription, ask, approved FROM roster
                     WHERE domain = $1 AND username = $2 ORDER BY contact",
                    &[&domain, &user],
                )?
                .iter()
                .map(|r| {
                    let groups: String = r.get(2);
                    let sub: String = r.get(3);
                    Item {
                        jid: r.get(0),
                        name: r.get(1),
                        groups: serde_json::from_str(&groups).unwrap_or_default(),
                        sub: Sub::parse(&sub).unwrap_or_default(),
                        ask: r.get(4),
                        approved: r.get(5),
                    }
                })
                .collect();
            let ver: Option<i64> = tx
                .query_opt(
                    "SELECT ver FROM roster_version WHERE domain = $1 AND username = $2",
                    &[&domain, &user],
                )?
                .map(|r| r.get(0));
            let pending_in = tx
                .query(
                    "SELECT contact, stanza FROM pending_in WHERE domain = $1 AND username = $2 ORDER BY contact",
                    &[&domain, &user],
                )?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            tx.commit()?;
            Ok(RosterData {
                ver: ver.unwrap_or(0) as u64,
                items,
                pending_in,
            })
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
            c.execute(
                "INSERT INTO roster (domain, username, contact, name, groups, subscription, ask, approved)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (domain, username, contact) DO UPDATE SET name = excluded.name, groups = excluded.groups,
                 subscription = excluded.subscription, ask = excluded.ask, approved = excluded.approved",
                &[&domain, &user, &item.jid, &item.name, &groups, &item.sub.as_str(), &item.ask, &item.approved],
            )
            .map_err(db_err)?;
            set_version(c, &domain, &user, ver)
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
            for t in ["roster", "pending_in"] {
                c.execute(
                    &format!(
                        "DELETE FROM {t} WHERE domain = $1 AND username = $2 AND contact = $3"
                    ),
                    &[&domain, &user, &jid],
                )
                .map_err(db_err)?;
            }
            set_version(c, &domain, &user, ver)
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
                    "INSERT INTO pending_in (domain, username, contact, stanza) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (domain, username, contact) DO UPDATE SET stanza = excluded.stanza",
                    &[&domain, &user, &contact, &x],
                ),
                None => c.execute(
                    "DELETE FROM pending_in WHERE domain = $1 AND username = $2 AND contact = $3",
                    &[&domain, &user, &contact],
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
        self.writer
            .write(offline_push_job(domain, user, stanza, limit)?)
    }

    fn offline_try_queue(
        &self,
        domain: &str,
        user: &str,
        stanza: &str,
        limit: usize,
    ) -> Option<Ack> {
        self.writer
            .try_queue_built(offline_push_job(domain, user, stanza, limit))
    }

    fn offline_queue(&self, domain: &str, user: &str, stanza: &str, limit: usize) -> Ack {
        self.writer
            .queue_built(offline_push_job(domain, user, stanza, limit))
    }

    fn offline_waiting(&self, domain: &str, user: &str) -> Result<bool, StorageError> {
        self.with(|c| {
            Ok(c.query_one(
                "SELECT EXISTS(SELECT 1 FROM offline WHERE domain = $1 AND username = $2)",
                &[&domain, &user],
            )?
            .get(0))
        })
    }

    fn offline_list(&self, domain: &str, user: &str) -> Result<Vec<(i64, String)>, StorageError> {
        self.with(|c| {
            Ok(c.query(
                "SELECT id, stanza FROM offline WHERE domain = $1 AND username = $2 ORDER BY id",
                &[&domain, &user],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })
    }

    fn offline_delete(&self, domain: &str, user: &str, last_id: i64) -> Result<(), StorageError> {
        let (domain, user) = own(domain, user);
        self.write(move |c| {
            c.execute(
                "DELETE FROM offline WHERE domain = $1 AND username = $2 AND id <= $3",
                &[&domain, &user, &last_id],
            )
            .and_then(|_| {
                c.execute(
                    "UPDATE offline_count SET n = (SELECT count(*) FROM offline
                     WHERE domain = $1 AND username = $2) WHERE domain = $1 AND username = $2",
                    &[&domain, &user],
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
            Ok(c.query_opt(
                "SELECT xml FROM documents WHERE domain = $1 AND username = $2 AND key = $3",
                &[&domain, &user, &key],
            )?
            .map(|r| r.get(0)))
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
                "INSERT INTO documents (domain, username, key, xml) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (domain, username, key) DO UPDATE SET xml = excluded.xml",
                &[&domain, &user, &key, &xml],
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
            Ok(c.query(
                "SELECT key, xml FROM documents WHERE domain = $1 AND username = $2 ORDER BY key",
                &[&domain, &user],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
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
            Ok(c.query(
                "SELECT jid FROM blocklist WHERE domain = $1 AND username = $2 ORDER BY jid",
                &[&domain, &user],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn blocklist_set(&self, domain: &str, user: &str, jids: &[String]) -> Result<(), StorageError> {
        let ((domain, user), jids) = (own(domain, user), jids.to_vec());
        self.write(move |c| {
            c.execute(
                "DELETE FROM blocklist WHERE domain = $1 AND username = $2",
                &[&domain, &user],
            )
            .map_err(db_err)?;
            for j in &jids {
                c.execute(
                    "INSERT INTO blocklist (domain, username, jid) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    &[&domain, &user, j],
                )
                .map_err(db_err)?;
            }
            Ok(())
        })
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        super::writer_stats(&self.writer.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{conformance, pg_server, quiet};
    use std::sync::Arc;

    const LIMITS: WriterLimits = WriterLimits {
        queue: 64,
        batch: 32,
    };

    fn open(pg: &pg_server::PgServer, db: &str) -> Postgres {
        Postgres::open(&pg.url(db), 4, LIMITS, quiet()).expect("open")
    }

    #[test]
    fn conformance_on_a_real_server() {
        let mut pg = pg_server::PgServer::start();
        conformance::accounts(&open(&pg, "xmppd"));
        pg.createdb("second");
        conformance::roster_offline_documents_blocklist(&open(&pg, "second"));
        conformance::rooms(&open(&pg, "second"));
        conformance::offline_queued(&open(&pg, "second"));
        pg.createdb("third");
        let db = Arc::new(open(&pg, "third"));
        conformance::concurrent_writes_all_succeed(db.clone());
        let stats: std::collections::HashMap<_, _> = db.stats().into_iter().collect();
        assert!(
            stats["storage_commits"] < stats["storage_writes"],
            "{stats:?}"
        );
    }

    #[test]
    fn migrations_run_once_and_survive_reopen() {
        let pg = pg_server::PgServer::start();
        let db = open(&pg, "xmppd");
        db.create_account("a.test", "kept", &Credentials::derive("pw", 64, false))
            .expect("create");
        drop(db);
        let db = open(&pg, "xmppd");
        assert_eq!(db.list_accounts("a.test").expect("list"), ["kept"]);
        let v: i32 = db
            .with(|c| Ok(c.query_one("SELECT version FROM xmppd_schema", &[])?.get(0)))
            .expect("version");
        assert_eq!(v as usize, MIGRATIONS.len());
    }

    #[test]
    fn a_lost_server_fails_writes_and_reads_with_errors() {
        let mut pg = pg_server::PgServer::start();
        let db = open(&pg, "xmppd");
        db.create_account("a.test", "a", &Credentials::derive("pw", 64, false))
            .expect("create");
        pg.stop();
        assert!(db.offline_push("a.test", "a", "<message/>", 10).is_err());
        assert!(db.credentials("a.test", "a").is_err());
        let stats: std::collections::HashMap<_, _> = db.stats().into_iter().collect();
        assert_eq!(stats["storage_failing"], 1, "{stats:?}");
    }
}

//! The embedded SQLite storage backend.
//!
//! WAL journal with `synchronous = FULL`: a write the server acknowledged survives a
//! crash of the process and of the machine. Connections are pooled; SQLite serialises
//! writers itself (busy timeout 5 s).

use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use xmppd_actors::storage::{Backend, RosterData, StorageError};
use xmppd_proto::auth::scram::{Credentials, ScramKeys};
use xmppd_proto::im::roster::{Item, Sub};

/// Schema migrations, applied in order; `user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE accounts (
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
    ) WITHOUT ROWID;",
    "CREATE TABLE roster (
        domain TEXT NOT NULL, username TEXT NOT NULL, contact TEXT NOT NULL,
        name TEXT, groups TEXT NOT NULL DEFAULT '[]',
        subscription TEXT NOT NULL DEFAULT 'none',
        ask INTEGER NOT NULL DEFAULT 0, approved INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (domain, username, contact)
    ) WITHOUT ROWID;
    CREATE TABLE roster_version (
        domain TEXT NOT NULL, username TEXT NOT NULL, ver INTEGER NOT NULL,
        PRIMARY KEY (domain, username)
    ) WITHOUT ROWID;
    CREATE TABLE pending_in (
        domain TEXT NOT NULL, username TEXT NOT NULL, contact TEXT NOT NULL, stanza TEXT NOT NULL,
        PRIMARY KEY (domain, username, contact)
    ) WITHOUT ROWID;
    CREATE TABLE offline (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        domain TEXT NOT NULL, username TEXT NOT NULL, stanza TEXT NOT NULL,
        stored INTEGER NOT NULL DEFAULT (strftime('%s','now'))
    );
    CREATE INDEX offline_by_user ON offline (domain, username, id);
    CREATE TABLE documents (
        domain TEXT NOT NULL, username TEXT NOT NULL, key TEXT NOT NULL, xml TEXT NOT NULL,
        PRIMARY KEY (domain, username, key)
    ) WITHOUT ROWID;
    CREATE TABLE blocklist (
        domain TEXT NOT NULL, username TEXT NOT NULL, jid TEXT NOT NULL,
        PRIMARY KEY (domain, username, jid)
    ) WITHOUT ROWID;",
];

/// Tables holding per-account data, emptied when the account is deleted.
const ACCOUNT_TABLES: &[&str] = &[
    "roster",
    "roster_version",
    "pending_in",
    "offline",
    "documents",
    "blocklist",
    "accounts",
];

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
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -1024;",
        )
        .map_err(db_err)?;
        Ok(c)
    }

    fn give_back(&self, c: Connection) {
        if let Ok(mut p) = self.pool.lock()
            && p.len() < 4
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
            let tx = c.unchecked_transaction().map_err(db_err)?;
            let mut n = 0;
            // `accounts` is last: its count says whether the account existed
            for t in ACCOUNT_TABLES {
                let sql = format!("DELETE FROM {t} WHERE domain = ?1 AND username = ?2");
                n = tx.execute(&sql, params![domain, user]).map_err(db_err)?;
            }
            if n == 0 {
                return Err(StorageError::NotFound);
            }
            tx.commit().map_err(db_err)
        })
    }

    fn roster_load(&self, domain: &str, user: &str) -> Result<RosterData, StorageError> {
        self.with(|c| {
            let items = Sqlite::roster_items(c, domain, user).map_err(db_err)?;
            let ver: Option<i64> = c
                .query_row("SELECT ver FROM roster_version WHERE domain = ?1 AND username = ?2", params![domain, user], |r| r.get(0))
                .optional()
                .map_err(db_err)?;
            let mut st = c
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
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(db_err)?;
            let groups = serde_json::to_string(&item.groups).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "INSERT INTO roster (domain, username, contact, name, groups, subscription, ask, approved)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (domain, username, contact) DO UPDATE SET name = excluded.name, groups = excluded.groups,
                 subscription = excluded.subscription, ask = excluded.ask, approved = excluded.approved",
                params![domain, user, item.jid, item.name, groups, item.sub.as_str(), item.ask, item.approved],
            )
            .map_err(db_err)?;
            set_version(&tx, domain, user, ver).map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
    }

    fn roster_remove(
        &self,
        domain: &str,
        user: &str,
        jid: &str,
        ver: u64,
    ) -> Result<(), StorageError> {
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(db_err)?;
            tx.execute(
                "DELETE FROM roster WHERE domain = ?1 AND username = ?2 AND contact = ?3",
                params![domain, user, jid],
            )
            .map_err(db_err)?;
            tx.execute(
                "DELETE FROM pending_in WHERE domain = ?1 AND username = ?2 AND contact = ?3",
                params![domain, user, jid],
            )
            .map_err(db_err)?;
            set_version(&tx, domain, user, ver).map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
    }

    fn pending_in(
        &self,
        domain: &str,
        user: &str,
        contact: &str,
        stanza: Option<&str>,
    ) -> Result<(), StorageError> {
        self.with(|c| {
            match stanza {
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
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(db_err)?;
            let n: i64 = tx
                .query_row(
                    "SELECT count(*) FROM offline WHERE domain = ?1 AND username = ?2",
                    params![domain, user],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if n as usize >= limit {
                return Err(StorageError::Full);
            }
            tx.execute(
                "INSERT INTO offline (domain, username, stanza) VALUES (?1, ?2, ?3)",
                params![domain, user, stanza],
            )
            .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
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
        self.with(|c| {
            c.execute(
                "DELETE FROM offline WHERE domain = ?1 AND username = ?2 AND id <= ?3",
                params![domain, user, last_id],
            )
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
        self.with(|c| {
            c.execute(
                "INSERT INTO documents (domain, username, key, xml) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (domain, username, key) DO UPDATE SET xml = excluded.xml",
                params![domain, user, key, xml],
            )
            .map(|_| ())
            .map_err(db_err)
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
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(db_err)?;
            tx.execute(
                "DELETE FROM blocklist WHERE domain = ?1 AND username = ?2",
                params![domain, user],
            )
            .map_err(db_err)?;
            for j in jids {
                tx.execute(
                    "INSERT OR IGNORE INTO blocklist (domain, username, jid) VALUES (?1, ?2, ?3)",
                    params![domain, user, j],
                )
                .map_err(db_err)?;
            }
            tx.commit().map_err(db_err)
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

    #[test]
    fn roster_offline_documents_blocklist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Sqlite::open(&dir.path().join("x.sqlite")).expect("open");
        db.create_account("a.test", "alice", &Credentials::derive("pw", 64, false))
            .expect("create");
        let mut item = Item::new("bob@a.test");
        item.groups = vec!["Friends".into()];
        item.sub = Sub::To;
        db.roster_put("a.test", "alice", &item, 3).expect("put");
        db.pending_in(
            "a.test",
            "alice",
            "carol@b.test",
            Some("<presence type='subscribe'/>"),
        )
        .expect("pending");
        let r = db.roster_load("a.test", "alice").expect("load");
        assert_eq!(r.ver, 3);
        assert_eq!(r.items, vec![item]);
        assert_eq!(r.pending_in.len(), 1);
        db.roster_remove("a.test", "alice", "bob@a.test", 4)
            .expect("remove");
        assert!(
            db.roster_load("a.test", "alice")
                .expect("load")
                .items
                .is_empty()
        );
        for i in 0..3 {
            db.offline_push("a.test", "alice", &format!("<message id='{i}'/>"), 3)
                .expect("push");
        }
        assert_eq!(
            db.offline_push("a.test", "alice", "<message/>", 3),
            Err(StorageError::Full)
        );
        assert!(db.offline_waiting("a.test", "alice").expect("waiting"));
        assert!(!db.offline_waiting("a.test", "bob").expect("waiting"));
        let msgs = db.offline_list("a.test", "alice").expect("list");
        assert_eq!(msgs.len(), 3);
        db.offline_delete("a.test", "alice", msgs[1].0)
            .expect("delete");
        assert_eq!(db.offline_list("a.test", "alice").expect("list").len(), 1);
        db.document_set(
            "a.test",
            "alice",
            "vcard-temp",
            "<vCard xmlns='vcard-temp'/>",
        )
        .expect("set");
        assert!(
            db.document_get("a.test", "alice", "vcard-temp")
                .expect("get")
                .is_some()
        );
        db.blocklist_set("a.test", "alice", &["spam@x".into(), "evil.example".into()])
            .expect("set");
        assert_eq!(db.blocklist_get("a.test", "alice").expect("get").len(), 2);
        db.delete_account("a.test", "alice").expect("delete");
        assert!(db.offline_list("a.test", "alice").expect("list").is_empty());
        assert!(db.blocklist_get("a.test", "alice").expect("get").is_empty());
        assert!(
            db.roster_load("a.test", "alice")
                .expect("load")
                .pending_in
                .is_empty()
        );
    }
}

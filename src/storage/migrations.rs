//! Versioned schema migrations, applied in order by xmppd itself at start.
//!
//! SQLite records how many ran in `PRAGMA user_version`; PostgreSQL in the table
//! `xmppd_schema`. A migration, once released, is never edited: changes are new entries.

/// SQLite migrations.
pub const SQLITE: &[&str] = &[
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
    // The number of offline messages each account has waiting, kept with every store and
    // delivery, so that the per-account limit is checked without counting the queue.
    "CREATE TABLE offline_count (
        domain TEXT NOT NULL, username TEXT NOT NULL, n INTEGER NOT NULL,
        PRIMARY KEY (domain, username)
    ) WITHOUT ROWID;
    INSERT INTO offline_count (domain, username, n)
        SELECT domain, username, count(*) FROM offline GROUP BY domain, username;",
    // chat rooms (XEP-0045): a persistent room's configuration, affiliations and subject
    "CREATE TABLE rooms (
        jid TEXT NOT NULL PRIMARY KEY, service TEXT NOT NULL, data TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX rooms_by_service ON rooms (service);",
    // a persistent room's discussion history: its newest messages by position
    "CREATE TABLE room_history (
        room TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, stanza TEXT NOT NULL,
        PRIMARY KEY (room, seq)
    ) WITHOUT ROWID;",
];

/// PostgreSQL migrations: the same tables as SQLite's.
pub const POSTGRES: &[&str] = &[
    "CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        salt BYTEA NOT NULL,
        iterations BIGINT NOT NULL,
        sha1_stored BYTEA NOT NULL,
        sha1_server BYTEA NOT NULL,
        sha256_stored BYTEA NOT NULL,
        sha256_server BYTEA NOT NULL,
        password TEXT,
        created BIGINT NOT NULL DEFAULT extract(epoch from now())::bigint,
        PRIMARY KEY (domain, username)
    );",
    "CREATE TABLE roster (
        domain TEXT NOT NULL, username TEXT NOT NULL, contact TEXT NOT NULL,
        name TEXT, groups TEXT NOT NULL DEFAULT '[]',
        subscription TEXT NOT NULL DEFAULT 'none',
        ask BOOLEAN NOT NULL DEFAULT false, approved BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (domain, username, contact)
    );
    CREATE TABLE roster_version (
        domain TEXT NOT NULL, username TEXT NOT NULL, ver BIGINT NOT NULL,
        PRIMARY KEY (domain, username)
    );
    CREATE TABLE pending_in (
        domain TEXT NOT NULL, username TEXT NOT NULL, contact TEXT NOT NULL, stanza TEXT NOT NULL,
        PRIMARY KEY (domain, username, contact)
    );
    CREATE TABLE offline (
        id BIGSERIAL PRIMARY KEY,
        domain TEXT NOT NULL, username TEXT NOT NULL, stanza TEXT NOT NULL,
        stored BIGINT NOT NULL DEFAULT extract(epoch from now())::bigint
    );
    CREATE INDEX offline_by_user ON offline (domain, username, id);
    CREATE TABLE documents (
        domain TEXT NOT NULL, username TEXT NOT NULL, key TEXT NOT NULL, xml TEXT NOT NULL,
        PRIMARY KEY (domain, username, key)
    );
    CREATE TABLE blocklist (
        domain TEXT NOT NULL, username TEXT NOT NULL, jid TEXT NOT NULL,
        PRIMARY KEY (domain, username, jid)
    );",
    "CREATE TABLE offline_count (
        domain TEXT NOT NULL, username TEXT NOT NULL, n BIGINT NOT NULL,
        PRIMARY KEY (domain, username)
    );
    INSERT INTO offline_count (domain, username, n)
        SELECT domain, username, count(*) FROM offline GROUP BY domain, username;",
    "CREATE TABLE rooms (
        jid TEXT NOT NULL PRIMARY KEY, service TEXT NOT NULL, data TEXT NOT NULL
    );
    CREATE INDEX rooms_by_service ON rooms (service);",
    "CREATE TABLE room_history (
        room TEXT NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, stanza TEXT NOT NULL,
        PRIMARY KEY (room, seq)
    );",
];

/// Tables holding per-account data, emptied when the account is deleted; `accounts`
/// last, so that its count says whether the account existed.
pub const ACCOUNT_TABLES: &[&str] = &[
    "roster",
    "roster_version",
    "pending_in",
    "offline",
    "offline_count",
    "documents",
    "blocklist",
    "accounts",
];

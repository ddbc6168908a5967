//! Offline-message storage rate through the daemon's storage layer (its own source,
//! included below): `offline_push` from many threads at once, as the account actors
//! call it from the blocking pool, on SQLite (WAL, synchronous = FULL) and on a
//! PostgreSQL started for the run (fsync on), with group commit (write_batch = 256)
//! and without it (write_batch = 1: one transaction, one fsync per message).
//!
//! `cargo bench -p xmppd-bench --bench storage` prints one table; results in RESULTS.md.
//! Needs PostgreSQL from Debian (`apt-get install postgresql`), started as the
//! `postgres` user when run as root.

#[allow(dead_code, unused_imports)]
#[path = "../../src/storage/mod.rs"]
mod storage;

// src/storage brings the test PostgreSQL helper along in test builds
#[cfg(not(test))]
#[path = "../../tests/common/postgres.rs"]
mod pg_server;
#[cfg(test)]
use storage::pg_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use storage::writer::WriterLimits;
use xmppd_actors::storage::Backend;

/// Offline accounts the messages go to.
const RECIPIENTS: usize = 64;
const RUN: Duration = Duration::from_secs(4);

fn quiet() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Messages stored per second with `callers` threads pushing for RUN.
fn rate(db: Arc<dyn Backend>, callers: usize) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let msg = format!(
        "<message xmlns='jabber:client' from='s@bench.test/r' to='r@bench.test' type='chat' id='x'><body>{}</body><delay xmlns='urn:xmpp:delay' from='bench.test' stamp='2026-01-01T00:00:00Z'>Offline Storage</delay></message>",
        "hello ".repeat(20)
    );
    let before: std::collections::HashMap<_, _> = db.stats().into_iter().collect();
    let start = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|t| {
            let (db, stop, done, failed, msg) = (
                db.clone(),
                stop.clone(),
                done.clone(),
                failed.clone(),
                msg.clone(),
            );
            std::thread::spawn(move || {
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let user = format!("r{}", i % RECIPIENTS);
                    match db.offline_push("bench.test", &user, &msg, usize::MAX) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    i += callers;
                }
            })
        })
        .collect();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = start.elapsed().as_secs_f64();
    let after: std::collections::HashMap<_, _> = db.stats().into_iter().collect();
    let n = done.load(Ordering::Relaxed);
    let commits = after["storage_commits"] - before["storage_commits"];
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no write may fail");
    (n as f64 / secs, n as f64 / commits.max(1) as f64)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it too: keep that short
    let quick = !std::env::args().any(|a| a == "--bench");
    let callers: &[usize] = if quick { &[4] } else { &[1, 16, 128] };
    let mut pg = pg_server::PgServer::start_durable();
    let dir = tempfile::tempdir().expect("tempdir");
    println!("| backend | write_batch | callers | messages/s | messages per commit |");
    println!("|---|---:|---:|---:|---:|");
    for batch in [1usize, 256] {
        let limits = WriterLimits { queue: 4096, batch };
        for (i, &c) in callers.iter().enumerate() {
            let file = dir.path().join(format!("b{batch}-{i}.sqlite"));
            let sqlite: Arc<dyn Backend> =
                Arc::new(storage::Sqlite::open(&file, 8, limits, quiet()).expect("sqlite"));
            let db = format!("b{batch}_{i}");
            pg.createdb(&db);
            let postgres: Arc<dyn Backend> = Arc::new(
                storage::postgres::Postgres::open(&pg.url(&db), 8, limits, quiet())
                    .expect("postgres"),
            );
            for (name, b) in [("SQLite", sqlite), ("PostgreSQL", postgres)] {
                let (per_sec, per_commit) = rate(b, c);
                println!("| {name} | {batch} | {c} | {per_sec:.0} | {per_commit:.1} |");
            }
        }
    }
}

//! The SQLite backend against the conformance suite, and its own cases.

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

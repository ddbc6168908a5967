//! One writer per database with group commit.
//!
//! Every durable write is a job sent to one thread that owns the database's write
//! connection. The thread takes whatever jobs are waiting (up to a batch limit), runs
//! them in one transaction and commits once: one fsync for many writes. The writes of a
//! batch first run one after the other with nothing between them; if one fails, the
//! transaction is rolled back and the batch runs again with each write inside its own
//! savepoint, so that the failed one fails alone and its neighbours commit (savepoints
//! cost a statement each, a round trip each on PostgreSQL: only failures pay for them). A caller learns the outcome of its write only after the commit
//! (or its failure), so an acknowledged write is durable.
//!
//! Writes never meet each other in the database, so nothing is refused because two
//! writers raced (SQLite's "database is locked"). The queue in front of the thread is
//! bounded: when it is full, callers wait for room, they are not refused.
//!
//! A caller may also queue a write without waiting for its commit ([`Writer::try_queue`],
//! [`Writer::queue`]) and learn the outcome later from an [`Ack`]: an actor hands several
//! writes over in a row (the queue is FIFO, so they commit in that order) and one
//! transaction takes them all, instead of one commit per write.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use xmppd_actors::storage::StorageError;

/// A write connection the writer can drive: one transaction, savepoints inside it.
pub trait WriteConn: Send + 'static {
    fn begin(&mut self) -> Result<(), StorageError>;
    fn commit(&mut self) -> Result<(), StorageError>;
    /// Abandon the transaction (errors are of no use here: the batch failed already).
    fn rollback(&mut self);
    fn savepoint(&mut self) -> Result<(), StorageError>;
    fn release(&mut self) -> Result<(), StorageError>;
    fn rollback_to(&mut self) -> Result<(), StorageError>;
    /// Whether the transaction is still open (SQLite rolls it back by itself after some
    /// errors: disk full, I/O errors).
    fn in_transaction(&self) -> bool;
}

/// The bounds of one writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Writes waiting for the writer at most; further callers wait for room.
    pub queue: usize,
    /// Writes in one transaction at most.
    pub batch: usize,
}

/// What the writer did, for `/stats`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Writes committed.
    pub writes: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Writes that failed (the statement or the transaction).
    pub errors: AtomicU64,
    /// Writes queued and not yet answered.
    pub pending: AtomicUsize,
    /// The last transaction failed as a whole (the backend is unusable).
    pub failing: AtomicBool,
}

/// A write; it may run twice (see the module's documentation), so it only touches the
/// database.
type Job<C> = Box<dyn FnMut(&mut C) -> Result<(), StorageError> + Send>;

/// The outcome of a queued write, sent after its transaction committed (or failed).
pub use xmppd_actors::storage::Ack;

/// Where a write's outcome goes: a thread blocked in [`Writer::write`], or an [`Ack`].
enum Reply {
    Wait(SyncSender<Result<(), StorageError>>),
    Ack(tokio::sync::oneshot::Sender<Result<(), StorageError>>),
}

impl Reply {
    /// Answer (the write no longer counts as pending).
    fn send(self, r: Result<(), StorageError>, stats: &WriterStats) {
        stats.pending.fetch_sub(1, Ordering::Relaxed);
        // the caller may be gone (a stopped actor): nothing more to tell
        let _ = match self {
            Reply::Wait(tx) => tx.send(r).map_err(|_| ()),
            Reply::Ack(tx) => tx.send(r).map_err(|_| ()),
        };
    }
}

struct Request<C> {
    job: Job<C>,
    reply: Reply,
}

/// The handle callers write through; dropping it stops the thread after the writes
/// already queued.
pub struct Writer<C: WriteConn> {
    tx: Mutex<Option<SyncSender<Request<C>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    pub stats: Arc<WriterStats>,
}

impl<C: WriteConn> Writer<C> {
    pub fn start(name: &str, conn: C, limits: WriterLimits, log: slog::Logger) -> Writer<C> {
        let (tx, rx) = sync_channel::<Request<C>>(limits.queue.max(1));
        let stats = Arc::new(WriterStats::default());
        let st = stats.clone();
        let batch = limits.batch.max(1);
        let thread = std::thread::Builder::new()
            .name(format!("{name}-writer"))
            .spawn(move || run(conn, rx, batch, &st, &log))
            .ok();
        Writer {
            tx: Mutex::new(thread.as_ref().map(|_| tx)),
            thread: Mutex::new(thread),
            stats,
        }
    }

    fn sender(&self) -> Option<SyncSender<Request<C>>> {
        match self.tx.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Run `job` in the next transaction; returns once it is committed (or failed).
    /// Blocks the calling thread: call it from the blocking pool, never from an actor.
    pub fn write(
        &self,
        job: impl FnMut(&mut C) -> Result<(), StorageError> + Send + 'static,
    ) -> Result<(), StorageError> {
        let Some(sender) = self.sender() else {
            return Err(stopped());
        };
        let (reply, answer) = sync_channel(1);
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        let sent = sender.send(Request {
            job: Box::new(job),
            reply: Reply::Wait(reply),
        });
        match sent {
            Ok(()) => answer.recv().unwrap_or_else(|_| Err(stopped())),
            Err(_) => {
                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                Err(stopped())
            }
        }
    }

    /// Queue `job` without waiting for its commit, when the queue has room (never
    /// blocks: actors may call it). `None`: the queue is full, nothing was queued.
    pub fn try_queue(
        &self,
        job: impl FnMut(&mut C) -> Result<(), StorageError> + Send + 'static,
    ) -> Option<Ack> {
        let Some(sender) = self.sender() else {
            return Some(ready(Err(stopped())));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = Request {
            job: Box::new(job),
            reply: Reply::Ack(tx),
        };
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(req) {
            Ok(()) => Some(rx),
            Err(e) => {
                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                match e {
                    TrySendError::Full(_) => None,
                    TrySendError::Disconnected(_) => Some(ready(Err(stopped()))),
                }
            }
        }
    }

    /// Queue `job` without waiting for its commit; waits for room when the queue is
    /// full. Blocks: call it from the blocking pool.
    /// [`Writer::try_queue`] for a job that may have failed to build (its error is
    /// the answer, at once).
    pub fn try_queue_built<J>(&self, job: Result<J, StorageError>) -> Option<Ack>
    where
        J: FnMut(&mut C) -> Result<(), StorageError> + Send + 'static,
    {
        match job {
            Ok(job) => self.try_queue(job),
            Err(e) => Some(ready(Err(e))),
        }
    }

    /// [`Writer::queue`] for a job that may have failed to build.
    pub fn queue_built<J>(&self, job: Result<J, StorageError>) -> Ack
    where
        J: FnMut(&mut C) -> Result<(), StorageError> + Send + 'static,
    {
        match job {
            Ok(job) => self.queue(job),
            Err(e) => ready(Err(e)),
        }
    }

    pub fn queue(
        &self,
        job: impl FnMut(&mut C) -> Result<(), StorageError> + Send + 'static,
    ) -> Ack {
        let Some(sender) = self.sender() else {
            return ready(Err(stopped()));
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = Request {
            job: Box::new(job),
            reply: Reply::Ack(tx),
        };
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        match sender.send(req) {
            Ok(()) => rx,
            Err(_) => {
                self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                ready(Err(stopped()))
            }
        }
    }

    /// Finish the queued writes and stop the thread.
    pub fn stop(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        let t = self.thread.lock().ok().and_then(|mut g| g.take());
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl<C: WriteConn> Drop for Writer<C> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stopped() -> StorageError {
    StorageError::Backend("the storage writer has stopped".into())
}

pub use xmppd_actors::storage::ready;

fn run<C: WriteConn>(
    mut conn: C,
    rx: Receiver<Request<C>>,
    max_batch: usize,
    stats: &WriterStats,
    log: &slog::Logger,
) {
    let mut batch: Vec<Request<C>> = Vec::with_capacity(max_batch.min(1024));
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        commit_batch(&mut conn, &mut batch, stats, log);
    }
}

/// One transaction for the whole batch; every request is answered.
fn commit_batch<C: WriteConn>(
    conn: &mut C,
    batch: &mut Vec<Request<C>>,
    stats: &WriterStats,
    log: &slog::Logger,
) {
    if batch.len() > 1 {
        match without_savepoints(conn, batch) {
            Ok(Some(outcomes)) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                if stats.failing.swap(false, Ordering::Relaxed) {
                    slog::info!(log, "storage writes work again");
                }
                for (req, r) in batch.drain(..).zip(outcomes) {
                    match &r {
                        Ok(()) => stats.writes.fetch_add(1, Ordering::Relaxed),
                        Err(_) => stats.errors.fetch_add(1, Ordering::Relaxed),
                    };
                    req.reply.send(r, stats);
                }
                return;
            }
            // one write failed: all rolled back, run again with savepoints
            Ok(None) => {}
            Err(e) => return fail_all(batch, e, stats, log),
        }
    }
    if let Err(e) = conn.begin() {
        return fail_all(batch, e, stats, log);
    }
    let single = batch.len() == 1;
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut lost = None;
    for mut req in batch.drain(..) {
        replies.push(req.reply);
        if lost.is_some() {
            continue;
        }
        // one write alone needs no savepoint: its failure rolls the transaction back
        if single {
            let r = guarded(&mut req.job, conn);
            match r {
                Err(e) if !conn.in_transaction() => lost = Some(e),
                r => outcomes.push(r),
            }
            continue;
        }
        if let Err(e) = conn.savepoint() {
            lost = Some(e);
            continue;
        }
        let r = guarded(&mut req.job, conn);
        if let Err(e) = &r
            && !conn.in_transaction()
        {
            // the database abandoned the whole transaction: nothing of it holds
            lost = Some(e.clone());
            continue;
        }
        let undo = match &r {
            Ok(()) => conn.release(),
            Err(_) => conn.rollback_to().and_then(|()| conn.release()),
        };
        match undo {
            Ok(()) => outcomes.push(r),
            Err(e) => lost = Some(e),
        }
    }
    if let Some(e) = lost {
        conn.rollback();
        return fail_replies(replies, e, stats, log);
    }
    if single && outcomes.first().is_some_and(|r| r.is_err()) {
        conn.rollback();
        stats.errors.fetch_add(1, Ordering::Relaxed);
        for (reply, r) in replies.into_iter().zip(outcomes) {
            reply.send(r, stats);
        }
        return;
    }
    match conn.commit() {
        Ok(()) => {
            if stats.failing.swap(false, Ordering::Relaxed) {
                slog::info!(log, "storage writes work again");
            }
            stats.commits.fetch_add(1, Ordering::Relaxed);
            for (reply, r) in replies.into_iter().zip(outcomes) {
                match &r {
                    Ok(()) => stats.writes.fetch_add(1, Ordering::Relaxed),
                    Err(_) => stats.errors.fetch_add(1, Ordering::Relaxed),
                };
                reply.send(r, stats);
            }
        }
        Err(e) => {
            conn.rollback();
            fail_replies(replies, e, stats, log);
        }
    }
}

/// The whole batch in one transaction without savepoints: `Ok(Some(outcomes))`
/// committed (a write refused as [`StorageError::Full`] wrote nothing, so it is an
/// outcome, not a reason to roll back), `Ok(None)` a write failed otherwise and
/// everything was rolled back, `Err` the transaction itself failed (begin or commit:
/// the backend is unusable).
fn without_savepoints<C: WriteConn>(
    conn: &mut C,
    batch: &mut [Request<C>],
) -> Result<Option<Vec<Result<(), StorageError>>>, StorageError> {
    conn.begin()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for req in batch.iter_mut() {
        match guarded(&mut req.job, conn) {
            Err(StorageError::Full) if conn.in_transaction() => {
                outcomes.push(Err(StorageError::Full))
            }
            Err(_) => {
                conn.rollback();
                return Ok(None);
            }
            Ok(()) => outcomes.push(Ok(())),
        }
    }
    if let Err(e) = conn.commit() {
        conn.rollback();
        return Err(e);
    }
    Ok(Some(outcomes))
}

/// Run one job; a panic in it fails that write only.
fn guarded<C>(job: &mut Job<C>, conn: &mut C) -> Result<(), StorageError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn)))
        .unwrap_or_else(|_| Err(StorageError::Backend("storage write panicked".into())))
}

fn fail_all<C>(
    batch: &mut Vec<Request<C>>,
    e: StorageError,
    stats: &WriterStats,
    log: &slog::Logger,
) {
    let replies = batch.drain(..).map(|r| r.reply).collect();
    fail_replies(replies, e, stats, log);
}

fn fail_replies(replies: Vec<Reply>, e: StorageError, stats: &WriterStats, log: &slog::Logger) {
    unusable(stats, &e, log);
    stats
        .errors
        .fetch_add(replies.len() as u64, Ordering::Relaxed);
    for reply in replies {
        reply.send(Err(e.clone()), stats);
    }
}

/// A whole transaction failed: the backend cannot take writes (disk full, read-only,
/// file gone, server down). Logged once, as a Major event (the server goes on serving;
/// each write refused is an error to its sender), until writes work again.
fn unusable(stats: &WriterStats, e: &StorageError, log: &slog::Logger) {
    if !stats.failing.swap(true, Ordering::Relaxed) {
        slog::info!(log, "storage unusable: writes fail"; "error" => %e);
    }
}

//! Back-pressure from the registry to a client's session.
//!
//! A signal for an account whose actor is busy waits in the registry
//! (`registry/waiting.rs`). When it came from a client's session, the session learns it
//! through its [`Backlog`]: while any of its signals wait there, the session takes
//! nothing more from its stream (it pauses its I/O task's reads, which go on writing,
//! and TCP slows the client down). So a fast sender is
//! paced by the storage of its recipients instead of being refused, and what waits in
//! the registry stays bounded by what the senders have in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// The number of a session's signals waiting in the registry, and a wake-up for the
/// session when it drops to zero.
#[derive(Debug, Default)]
pub struct Backlog {
    waiting: AtomicUsize,
    cleared: Notify,
}

impl Backlog {
    /// One more of the session's signals waits.
    pub fn add(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    /// One of them was handed over (or answered).
    pub fn done(&self) {
        if self.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.cleared.notify_waiters();
        }
    }

    /// Nothing of the session waits.
    pub fn is_clear(&self) -> bool {
        self.waiting.load(Ordering::Acquire) == 0
    }

    /// Ready once nothing of the session waits.
    pub async fn clear(self: Arc<Self>) {
        loop {
            // registered before the check: a `done` in between is not missed
            let woken = self.cleared.notified();
            if self.is_clear() {
                return;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn clear_waits_for_the_last_signal() {
        let b = Arc::new(Backlog::default());
        assert!(b.is_clear());
        b.add();
        b.add();
        let waiter = tokio::spawn(b.clone().clear());
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.done();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one still waits");
        b.done();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .expect("task");
        assert!(b.is_clear());
    }
}

//! A bounded pool of read connections: at most `max` open at once; a reader finding
//! all of them busy waits for one (the blocking pool has hundreds of threads, and each
//! SQLite connection holds its cache, each PostgreSQL one a server process).

use std::sync::{Condvar, Mutex, MutexGuard};
use xmppd_actors::storage::StorageError;

pub struct Pool<C> {
    max: usize,
    state: Mutex<State<C>>,
    freed: Condvar,
}

struct State<C> {
    idle: Vec<C>,
    open: usize,
}

impl<C> Pool<C> {
    pub fn new(max: usize) -> Pool<C> {
        Pool {
            max: max.max(1),
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` on a connection: an idle one, a new one from `connect` while fewer than
    /// `max` are open, or else the next one given back. `f` says whether the connection
    /// is still good to keep.
    pub fn with<R>(
        &self,
        connect: impl FnOnce() -> Result<C, StorageError>,
        f: impl FnOnce(&mut C) -> (R, bool),
    ) -> Result<R, StorageError> {
        let idle = {
            let mut st = self.lock();
            loop {
                if let Some(c) = st.idle.pop() {
                    break Some(c);
                }
                if st.open < self.max {
                    st.open += 1;
                    break None;
                }
                st = self.freed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
        };
        let mut c = match idle {
            Some(c) => c,
            None => match connect() {
                Ok(c) => c,
                Err(e) => {
                    self.give_back(None);
                    return Err(e);
                }
            },
        };
        let (r, keep) = f(&mut c);
        self.give_back(keep.then_some(c));
        Ok(r)
    }

    fn give_back(&self, c: Option<C>) {
        let mut st = self.lock();
        match c {
            Some(c) => st.idle.push(c),
            None => st.open -= 1,
        }
        drop(st);
        self.freed.notify_one();
    }

    /// Connections open now (idle and in use).
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lock().open
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_than_max_open_and_waiters_are_served() {
        let pool = Arc::new(Pool::<usize>::new(3));
        let busy = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let made = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..24)
            .map(|_| {
                let (pool, busy, peak, made) =
                    (pool.clone(), busy.clone(), peak.clone(), made.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        pool.with(
                            || Ok(made.fetch_add(1, Ordering::SeqCst)),
                            |_| {
                                let n = busy.fetch_add(1, Ordering::SeqCst) + 1;
                                peak.fetch_max(n, Ordering::SeqCst);
                                std::thread::yield_now();
                                busy.fetch_sub(1, Ordering::SeqCst);
                                ((), true)
                            },
                        )
                        .expect("with");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert!(made.load(Ordering::SeqCst) <= 3);
        assert_eq!(pool.open(), made.load(Ordering::SeqCst));
    }

    #[test]
    fn a_failed_connect_or_a_broken_connection_frees_its_place() {
        let pool = Pool::<u8>::new(1);
        let r: Result<(), _> =
            pool.with(|| Err(StorageError::Backend("down".into())), |_| ((), true));
        assert!(r.is_err());
        assert_eq!(pool.open(), 0);
        pool.with(|| Ok(1), |_| ((), false)).expect("with");
        assert_eq!(pool.open(), 0);
        pool.with(|| Ok(2), |_| ((), true)).expect("with");
        assert_eq!(pool.open(), 1);
    }
}

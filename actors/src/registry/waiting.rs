//! Signals waiting for an account actor whose mailbox is full.
//!
//! The registry hands an account's signals over with `try_send`; when the account is
//! busy (storing offline messages one commit at a time, say) its mailbox fills. Rather
//! than bounce what arrives then, the registry keeps it here, in arrival order, and
//! hands it over as the mailbox empties; while anything waits for an account, every new
//! signal for it queues behind (order is kept).
//!
//! A waiting signal from a client's session counts in that session's
//! [`Backlog`](crate::signals::backlog::Backlog) until it is handed over: the session
//! stops reading its client meanwhile, so senders slow down to what the accounts take
//! and what waits here is bounded by what they had in flight (a read or two each, and
//! the registry's mailbox). Signals from elsewhere (federation, components, accounts)
//! cannot be held back that way: beyond [`MAX_WAITING`] waiting in all, those are
//! bounced (`resource-constraint`), while a session's still waits (its session is
//! held back already).

use crate::signals::Signal;
use crate::signals::backlog::Backlog;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xmpp_parsers::jid::BareJid;

/// A waiting signal, with the backlog of the session it came from (if it did).
pub struct Entry {
    pub sig: Signal,
    pub from: Option<Arc<Backlog>>,
    /// When it began to wait (see [`Waiting::expire`]).
    pub since: Instant,
}

/// Signals waiting for busy accounts, all accounts together, beyond which those not
/// from a client's session are bounced.
pub const MAX_WAITING: usize = 65_536;

/// The hard ceiling: beyond it a session's signals are bounced too (a session reads
/// nothing more while any of its signals wait, so only a burst of very many sessions
/// at once reaches it).
pub const MAX_WAITING_HARD: usize = 2 * MAX_WAITING;

/// How long a signal may wait for its account before it is bounced
/// (`resource-constraint`) and its session reads again.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Waiting {
    queues: HashMap<BareJid, VecDeque<Entry>>,
    total: usize,
}

impl Waiting {
    /// Whether signals wait for `bare` (a new one must queue behind them).
    pub fn is_waiting(&self, bare: &BareJid) -> bool {
        self.queues.contains_key(bare)
    }

    /// Queue `sig` for `bare` (counted in `from` until it leaves); the signal back when
    /// the bound is reached and it did not come from a session.
    pub fn push(
        &mut self,
        bare: &BareJid,
        sig: Signal,
        from: Option<Arc<Backlog>>,
    ) -> Option<Signal> {
        if self.total >= MAX_WAITING && from.is_none() || self.total >= MAX_WAITING_HARD {
            return Some(sig);
        }
        self.total += 1;
        if let Some(b) = &from {
            b.add();
        }
        let e = Entry {
            sig,
            from,
            since: Instant::now(),
        };
        self.queues.entry(bare.clone()).or_default().push_back(e);
        None
    }

    /// The oldest signal waiting for `bare` (still counted in its session's backlog:
    /// its `done` when it is handed over); `None` (and `bare` no longer waiting)
    /// when there is none.
    pub fn pop(&mut self, bare: &BareJid) -> Option<Entry> {
        let q = self.queues.get_mut(bare)?;
        let e = q.pop_front();
        if e.is_some() {
            self.total -= 1;
        } else {
            self.queues.remove(bare);
        }
        e
    }

    /// Put back what [`Waiting::pop`] gave, at the front (the account was still busy).
    pub fn unpop(&mut self, bare: &BareJid, e: Entry) {
        self.total += 1;
        self.queues.entry(bare.clone()).or_default().push_front(e);
    }

    /// Take out every signal that has waited since before `before` (the oldest of a
    /// queue come first, so each queue is cut at its front); still counted in their
    /// sessions' backlogs (the caller bounces them and counts them down).
    pub fn expire(&mut self, before: Instant) -> Vec<Entry> {
        let mut out = Vec::new();
        self.queues.retain(|_, q| {
            while q.front().is_some_and(|e| e.since < before) {
                out.extend(q.pop_front());
            }
            !q.is_empty()
        });
        self.total -= out.len();
        out
    }

    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::jid::Jid;

    fn msg(id: &str) -> Signal {
        let stanza: minidom::Element = format!("<message xmlns='jabber:client' id='{id}'/>")
            .parse()
            .expect("stanza");
        Signal::new(
            Jid::new("a@x").expect("jid"),
            Jid::new("b@x").expect("jid"),
            stanza,
        )
        .expect("signal")
    }

    /// What the registry does with an entry it handed over.
    fn done(e: Entry) -> Signal {
        if let Some(b) = &e.from {
            b.done();
        }
        e.sig
    }

    fn id(s: &Signal) -> String {
        s.stanza().attr("id").unwrap_or_default().to_string()
    }

    #[test]
    fn signals_wait_in_order_and_the_queue_ends_when_drained() {
        let b = BareJid::new("b@x").expect("jid");
        let mut w = Waiting::default();
        let session = Arc::new(Backlog::default());
        assert!(!w.is_waiting(&b));
        assert!(w.push(&b, msg("1"), Some(session.clone())).is_none());
        assert!(w.push(&b, msg("2"), Some(session.clone())).is_none());
        assert!(w.is_waiting(&b));
        assert!(!session.is_clear(), "the sender's session is held back");
        let first = w.pop(&b).expect("first");
        assert_eq!(id(&first.sig), "1");
        // still busy: back to the front
        w.unpop(&b, first);
        assert_eq!(w.total(), 2);
        assert_eq!(w.pop(&b).map(|e| id(&done(e))).as_deref(), Some("1"));
        assert!(!session.is_clear(), "one still waits");
        assert_eq!(w.pop(&b).map(|e| id(&done(e))).as_deref(), Some("2"));
        assert!(session.is_clear(), "the session reads again");
        assert!(w.pop(&b).is_none());
        assert!(!w.is_waiting(&b));
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn the_total_is_bounded() {
        let b = BareJid::new("b@x").expect("jid");
        let mut w = Waiting::default();
        for _ in 0..MAX_WAITING {
            assert!(w.push(&b, msg("m"), None).is_none());
        }
        assert!(w.push(&b, msg("over"), None).is_some());
        assert_eq!(w.total(), MAX_WAITING);
        // a session's signal still waits: the session stops reading meanwhile
        let session = Arc::new(Backlog::default());
        assert!(w.push(&b, msg("paced"), Some(session.clone())).is_none());
        assert!(!session.is_clear());
        assert_eq!(w.total(), MAX_WAITING + 1);
        // up to the hard ceiling
        for _ in MAX_WAITING + 1..MAX_WAITING_HARD {
            assert!(w.push(&b, msg("m"), Some(session.clone())).is_none());
        }
        assert!(w.push(&b, msg("over"), Some(session.clone())).is_some());
        assert_eq!(w.total(), MAX_WAITING_HARD);
    }

    #[test]
    fn what_waited_too_long_expires_and_the_rest_stays_in_order() {
        let (b, c) = (
            BareJid::new("b@x").expect("jid"),
            BareJid::new("c@x").expect("jid"),
        );
        let mut w = Waiting::default();
        let session = Arc::new(Backlog::default());
        assert!(w.push(&b, msg("old"), Some(session.clone())).is_none());
        assert!(w.push(&c, msg("old-c"), None).is_none());
        std::thread::sleep(Duration::from_millis(20));
        let cut = Instant::now();
        assert!(w.push(&b, msg("new"), Some(session.clone())).is_none());
        let gone: Vec<String> = w.expire(cut).into_iter().map(|e| id(&done(e))).collect();
        assert_eq!(gone.len(), 2);
        assert!(gone.contains(&"old".to_string()) && gone.contains(&"old-c".to_string()));
        assert!(!w.is_waiting(&c), "an emptied queue ends");
        assert!(!session.is_clear(), "the new one still waits");
        assert_eq!(w.pop(&b).map(|e| id(&done(e))).as_deref(), Some("new"));
        assert!(session.is_clear());
        assert_eq!(w.total(), 0);
    }
}

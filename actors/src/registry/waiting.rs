//! Signals waiting for an account actor whose mailbox is full.
//!
//! The registry hands an account's signals over with `try_send`; when the account is
//! busy (storing offline messages one commit at a time, say) its mailbox fills. Rather
//! than bounce what arrives then, the registry keeps it here, in arrival order, and
//! hands it over as the mailbox empties; while anything waits for an account, every new
//! signal for it queues behind (order is kept). The total is bounded: beyond
//! [`MAX_WAITING`] a signal is bounced (`resource-constraint`).

use crate::signals::Signal;
use std::collections::{HashMap, VecDeque};
use xmpp_parsers::jid::BareJid;

/// Signals waiting for busy accounts, all accounts together.
pub const MAX_WAITING: usize = 65_536;

#[derive(Default)]
pub struct Waiting {
    queues: HashMap<BareJid, VecDeque<Signal>>,
    total: usize,
}

impl Waiting {
    /// Whether signals wait for `bare` (a new one must queue behind them).
    pub fn is_waiting(&self, bare: &BareJid) -> bool {
        self.queues.contains_key(bare)
    }

    /// Queue `sig` for `bare`; the signal back when the bound is reached.
    pub fn push(&mut self, bare: &BareJid, sig: Signal) -> Option<Signal> {
        if self.total >= MAX_WAITING {
            return Some(sig);
        }
        self.total += 1;
        self.queues.entry(bare.clone()).or_default().push_back(sig);
        None
    }

    /// The oldest signal waiting for `bare`; `None` (and `bare` no longer waiting)
    /// when there is none.
    pub fn pop(&mut self, bare: &BareJid) -> Option<Signal> {
        let q = self.queues.get_mut(bare)?;
        let sig = q.pop_front();
        if sig.is_some() {
            self.total -= 1;
        } else {
            self.queues.remove(bare);
        }
        sig
    }

    /// Put back what [`Waiting::pop`] gave, at the front (the account was still busy).
    pub fn unpop(&mut self, bare: &BareJid, sig: Signal) {
        self.total += 1;
        self.queues.entry(bare.clone()).or_default().push_front(sig);
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

    fn id(s: &Signal) -> String {
        s.stanza().attr("id").unwrap_or_default().to_string()
    }

    #[test]
    fn signals_wait_in_order_and_the_queue_ends_when_drained() {
        let b = BareJid::new("b@x").expect("jid");
        let mut w = Waiting::default();
        assert!(!w.is_waiting(&b));
        assert!(w.push(&b, msg("1")).is_none());
        assert!(w.push(&b, msg("2")).is_none());
        assert!(w.is_waiting(&b));
        let first = w.pop(&b).expect("first");
        assert_eq!(id(&first), "1");
        // still busy: back to the front
        w.unpop(&b, first);
        assert_eq!(w.total(), 2);
        assert_eq!(w.pop(&b).map(|s| id(&s)).as_deref(), Some("1"));
        assert_eq!(w.pop(&b).map(|s| id(&s)).as_deref(), Some("2"));
        assert!(w.pop(&b).is_none());
        assert!(!w.is_waiting(&b));
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn the_total_is_bounded() {
        let b = BareJid::new("b@x").expect("jid");
        let mut w = Waiting::default();
        for _ in 0..MAX_WAITING {
            assert!(w.push(&b, msg("m")).is_none());
        }
        assert!(w.push(&b, msg("over")).is_some());
        assert_eq!(w.total(), MAX_WAITING);
    }
}

//! The domain pairs authorised on one inbound server stream (RFC 6120 §13.7, XEP-0220
//! §2.1 "several domain pairs on one stream"), and the check every stanza passes.

use crate::stream::error::Condition;
use std::collections::HashSet;

/// Verifications one inbound stream may have running at once; more dialback requests
/// get `db:result type='error'` with `resource-constraint` until one ends.
pub const MAX_PENDING: usize = 10;

/// The (remote, local) domain pairs a peer has proven on its stream.
#[derive(Debug, Default)]
pub struct Pairs {
    verified: HashSet<(String, String)>,
    /// Pairs whose verification is running.
    pending: HashSet<(String, String)>,
}

/// Why a dialback request is refused before any verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// More pairs (verified or pending) than the stream may hold.
    TooMany,
    /// The same pair is being verified already.
    Duplicate,
    /// [`MAX_PENDING`] verifications run already on this stream.
    Busy,
}

impl Pairs {
    pub fn is_empty(&self) -> bool {
        self.verified.is_empty()
    }

    pub fn len(&self) -> usize {
        self.verified.len() + self.pending.len()
    }

    /// A dialback request for `remote` → `local` starts, unless the stream holds `max`
    /// pairs already or asks for this one twice.
    pub fn begin(&mut self, remote: &str, local: &str, max: usize) -> Result<(), Refusal> {
        let p = (remote.to_ascii_lowercase(), local.to_ascii_lowercase());
        if self.pending.contains(&p) {
            return Err(Refusal::Duplicate);
        }
        if self.verified.contains(&p) {
            return Ok(());
        }
        if self.len() >= max {
            return Err(Refusal::TooMany);
        }
        if self.pending.len() >= MAX_PENDING {
            return Err(Refusal::Busy);
        }
        self.pending.insert(p);
        Ok(())
    }

    /// The verification of a pair ended.
    pub fn finish(&mut self, remote: &str, local: &str, valid: bool) {
        let p = (remote.to_ascii_lowercase(), local.to_ascii_lowercase());
        self.pending.remove(&p);
        if valid {
            self.verified.insert(p);
        }
    }

    /// Authorise every pair for `remote` at once (SASL EXTERNAL on a certificate).
    pub fn grant(&mut self, remote: &str, local: &str) {
        self.verified
            .insert((remote.to_ascii_lowercase(), local.to_ascii_lowercase()));
    }

    /// May a stanza from `from_domain` to `to_domain` pass on this stream? The stream
    /// error when not (RFC 6120 §4.9.3): `to` not hosted here is `host-unknown`; nothing
    /// proven yet is `not-authorized`; a `from` never proven for that `to` is
    /// `invalid-from`.
    pub fn check(
        &self,
        from_domain: &str,
        to_domain: &str,
        hosted: impl Fn(&str) -> bool,
    ) -> Result<(), Condition> {
        let to = to_domain.to_ascii_lowercase();
        if !hosted(&to) {
            return Err(Condition::HostUnknown);
        }
        if self.verified.is_empty() {
            return Err(Condition::NotAuthorized);
        }
        let pair = (from_domain.to_ascii_lowercase(), to);
        if self.verified.contains(&pair) {
            Ok(())
        } else {
            Err(Condition::InvalidFrom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosted(d: &str) -> bool {
        d == "a.example" || d == "x.a.example"
    }

    #[test]
    fn stanzas_pass_only_for_proven_pairs() {
        let mut p = Pairs::default();
        assert_eq!(
            p.check("b.example", "a.example", hosted),
            Err(Condition::NotAuthorized)
        );
        p.begin("b.example", "a.example", 10).expect("begin");
        assert_eq!(
            p.check("b.example", "a.example", hosted),
            Err(Condition::NotAuthorized),
            "pending is not proven"
        );
        p.finish("B.example", "a.example", true);
        assert_eq!(p.check("b.example", "A.example", hosted), Ok(()));
        assert_eq!(
            p.check("c.example", "a.example", hosted),
            Err(Condition::InvalidFrom)
        );
        assert_eq!(
            p.check("b.example", "x.a.example", hosted),
            Err(Condition::InvalidFrom),
            "proven for a.example only"
        );
        assert_eq!(
            p.check("b.example", "elsewhere.example", hosted),
            Err(Condition::HostUnknown)
        );
    }

    #[test]
    fn failed_verification_proves_nothing() {
        let mut p = Pairs::default();
        p.begin("b.example", "a.example", 10).expect("begin");
        p.finish("b.example", "a.example", false);
        assert!(p.is_empty());
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn pairs_are_bounded_and_not_asked_twice_at_once() {
        let mut p = Pairs::default();
        p.begin("b1", "a.example", 2).expect("1");
        assert_eq!(p.begin("b1", "a.example", 2), Err(Refusal::Duplicate));
        p.begin("b2", "a.example", 2).expect("2");
        assert_eq!(p.begin("b3", "a.example", 2), Err(Refusal::TooMany));
        p.finish("b1", "a.example", true);
        // asking again for a proven pair is fine and takes no room
        assert_eq!(p.begin("b1", "a.example", 2), Ok(()));
    }

    #[test]
    fn running_verifications_are_bounded() {
        let mut p = Pairs::default();
        for i in 0..MAX_PENDING {
            p.begin(&format!("b{i}"), "a.example", 100).expect("room");
        }
        assert_eq!(p.begin("late", "a.example", 100), Err(Refusal::Busy));
        p.finish("b0", "a.example", false);
        assert_eq!(p.begin("late", "a.example", 100), Ok(()));
    }
}

//! RFC 6121 §8.5.2.1.1: which resources of an account get a message sent to its bare
//! JID. Written once, used by the registry's route table (and so by a session's direct
//! path through its replica) and by the account actor.
//!
//! The choice is made in two steps that allocate nothing: [`select`] looks at the
//! (available, priority) of every resource once and returns a [`Selection`], and
//! [`Selection::takes`] then tells, resource by resource, who gets the message.

/// Who of an account's resources get a message to its bare JID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// No resource is available at a non-negative priority: the message is for the
    /// account (offline storage, or an error), or dropped if it is a headline.
    Nobody,
    /// The available resources at this (the highest non-negative) priority; several on
    /// a tie, each gets a copy (the RFC allows either, xmppd delivers to all of them).
    Priority(i8),
    /// A headline: every available resource at a non-negative priority.
    AllNonNegative,
}

impl Selection {
    /// Does a resource that is `available` at `priority` get the message?
    #[inline]
    pub fn takes(self, available: bool, priority: i8) -> bool {
        available
            && priority >= 0
            && match self {
                Selection::Nobody => false,
                Selection::Priority(p) => priority == p,
                Selection::AllNonNegative => true,
            }
    }

    /// Is there anyone to take it?
    pub fn is_nobody(self) -> bool {
        self == Selection::Nobody
    }
}

/// Choose, from the (available, priority) of each resource and the message type,
/// who gets a message sent to the bare JID. Resources with a negative priority never
/// get one (§8.5.2.1.1); a headline goes to every non-negative available resource.
pub fn select(
    resources: impl IntoIterator<Item = (bool, i8)>,
    message_type: Option<&str>,
) -> Selection {
    let best = resources
        .into_iter()
        .filter(|&(available, priority)| available && priority >= 0)
        .map(|(_, priority)| priority)
        .max();
    match (best, message_type) {
        (None, _) => Selection::Nobody,
        (Some(_), Some("headline")) => Selection::AllNonNegative,
        (Some(p), _) => Selection::Priority(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indexes of the resources that get a message of type `ty`.
    fn who(resources: &[(bool, i8)], ty: Option<&str>) -> Vec<usize> {
        let s = select(resources.iter().copied(), ty);
        resources
            .iter()
            .enumerate()
            .filter(|(_, (a, p))| s.takes(*a, *p))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn highest_priority_wins() {
        let r = [(true, 1), (true, 5), (true, 0)];
        assert_eq!(who(&r, None), vec![1]);
        assert_eq!(who(&r, Some("chat")), vec![1]);
        assert_eq!(who(&r, Some("normal")), vec![1]);
    }

    #[test]
    fn ties_all_get_a_copy() {
        let r = [(true, 3), (true, 1), (true, 3)];
        assert_eq!(who(&r, Some("chat")), vec![0, 2]);
    }

    #[test]
    fn negative_priority_never_gets_a_bare_message() {
        let r = [(true, -1), (true, -5)];
        assert_eq!(select(r, Some("chat")), Selection::Nobody);
        assert_eq!(who(&r, Some("headline")), Vec::<usize>::new());
        let r = [(true, -1), (true, 0)];
        assert_eq!(who(&r, None), vec![1]);
    }

    #[test]
    fn unavailable_resources_are_skipped() {
        // a bound resource that sent no presence yet, at a higher stored priority
        let r = [(false, 10), (true, 2)];
        assert_eq!(who(&r, Some("chat")), vec![1]);
        assert_eq!(select([(false, 0)], None), Selection::Nobody);
        assert_eq!(select([], None), Selection::Nobody);
    }

    #[test]
    fn headline_goes_to_every_non_negative_resource() {
        let r = [(true, 1), (true, 0), (true, -1), (false, 4), (true, 7)];
        assert_eq!(who(&r, Some("headline")), vec![0, 1, 4]);
        assert_eq!(who(&r, Some("chat")), vec![4]);
    }
}

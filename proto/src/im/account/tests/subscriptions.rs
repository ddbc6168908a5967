//! Subscription decisions (RFC 6121 §3), both directions, pre-approval and the answers
//! the server gives for the user, roster removal.

use super::*;
use crate::stanza::{ErrorCondition, SubscribeKind};

/// alice with a resource that is online and asked for the roster.
fn alice_online() -> State {
    let mut s = alice();
    online(&mut s, "pc", 0);
    s.resource_mut("pc").expect("pc").roster_interest = true;
    s
}

/// A subscription presence of type `ty` from `from` (as the registry hands it over).
fn inbound(s: &mut State, from: &str, kind: SubscribeKind, ty: &str) -> Vec<Effect> {
    let p = el(&format!(
        "<presence xmlns='jabber:client' from='{from}' to='alice@a.test' type='{ty}'/>"
    ));
    s.inbound_subscription(&jid(from), kind, p)
}

fn sub_of(s: &State, contact: &str) -> (Sub, bool, bool) {
    let i = s.roster.get(contact).expect("item");
    (i.sub, i.ask, i.approved)
}

#[test]
fn user_subscribes_request_routed_from_bare_jid_and_pushed() {
    let mut s = alice_online();
    let fx = send(&mut s, "pc", ("to='bob@b.test/x' type='subscribe'", ""));
    assert_eq!(
        routed(&fx),
        vec!["presence alice@a.test→bob@b.test (subscribe)"]
    );
    assert_eq!(
        pushes(&fx),
        vec!["pc: bob@b.test none ask=subscribe approved=-"]
    );
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::None, true, false));
    assert!(matches!(
        stored(&fx)[..],
        [StoreOp::RosterPut { ver: 1, .. }]
    ));
}

#[test]
fn contact_request_waits_for_the_user_then_is_approved() {
    let mut s = alice_online();
    let fx = inbound(
        &mut s,
        "bob@b.test/x",
        SubscribeKind::Subscribe,
        "subscribe",
    );
    assert_eq!(written(&fx), vec!["pc: presence alice@a.test (subscribe)"]);
    assert!(s.pending.contains_key("bob@b.test"));
    assert!(matches!(
        stored(&fx)[..],
        [StoreOp::PendingIn {
            stanza: Some(_),
            ..
        }]
    ));
    assert!(
        !s.roster.contains_key("bob@b.test"),
        "no item until answered"
    );

    // the user approves: the contact gets the answer and the user's presence
    let fx = send(&mut s, "pc", ("to='bob@b.test' type='subscribed'", ""));
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test→bob@b.test (subscribed)",
            "presence alice@a.test/pc→bob@b.test",
        ]
    );
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::From, false, false));
    assert!(!s.pending.contains_key("bob@b.test"));
    assert!(matches!(
        stored(&fx)[..],
        [
            StoreOp::RosterPut { .. },
            StoreOp::PendingIn { stanza: None, .. }
        ]
    ));
}

#[test]
fn pre_approval_lets_the_server_answer_for_the_user() {
    let mut s = alice_online();
    // RFC 6121 §3.4: subscribed with nothing pending is a pre-approval, not routed
    let fx = send(&mut s, "pc", ("to='bob@b.test' type='subscribed'", ""));
    assert!(routed(&fx).is_empty());
    assert_eq!(pushes(&fx), vec!["pc: bob@b.test none ask=- approved=true"]);
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::None, false, true));

    let fx = inbound(
        &mut s,
        "bob@b.test/x",
        SubscribeKind::Subscribe,
        "subscribe",
    );
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test→bob@b.test (subscribed)",
            "presence alice@a.test/pc→bob@b.test",
        ]
    );
    assert!(
        written(&fx).iter().all(|w| w.contains(" iq ")),
        "the user sees a push, not the request"
    );
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::From, false, false));
}

#[test]
fn a_pre_approval_can_be_withdrawn() {
    let mut s = alice_online();
    send(&mut s, "pc", ("to='bob@b.test' type='subscribed'", ""));
    let fx = send(&mut s, "pc", ("to='bob@b.test' type='unsubscribed'", ""));
    assert!(routed(&fx).is_empty());
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::None, false, false));
    // now a request waits for the user again
    let fx = inbound(&mut s, "bob@b.test", SubscribeKind::Subscribe, "subscribe");
    assert!(routed(&fx).is_empty());
    assert_eq!(written(&fx), vec!["pc: presence alice@a.test (subscribe)"]);
}

#[test]
fn a_repeated_request_from_a_subscribed_contact_is_answered_for_the_user() {
    let mut s = alice_online();
    contact(&mut s, "bob@b.test", Sub::Both);
    let fx = inbound(
        &mut s,
        "bob@b.test/x",
        SubscribeKind::Subscribe,
        "subscribe",
    );
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test→bob@b.test (subscribed)",
            "presence alice@a.test/pc→bob@b.test",
        ]
    );
    assert!(stored(&fx).is_empty(), "nothing changed");
    assert!(written(&fx).is_empty());
}

#[test]
fn no_such_user_answers_unsubscribed() {
    let mut s = alice();
    s.exists = Some(false);
    let fx = inbound(
        &mut s,
        "bob@b.test/x",
        SubscribeKind::Subscribe,
        "subscribe",
    );
    assert_eq!(
        routed(&fx),
        vec!["presence alice@a.test→bob@b.test (unsubscribed)"]
    );
    assert!(
        inbound(
            &mut s,
            "bob@b.test",
            SubscribeKind::Subscribed,
            "subscribed"
        )
        .is_empty()
    );
}

#[test]
fn requests_from_blocked_contacts_are_dropped() {
    let mut s = alice_online();
    s.blocklist.push("b.test".into());
    assert!(
        inbound(
            &mut s,
            "bob@b.test/x",
            SubscribeKind::Subscribe,
            "subscribe"
        )
        .is_empty()
    );
    assert!(s.pending.is_empty());
}

#[test]
fn contact_approves_the_users_request() {
    let mut s = alice_online();
    send(&mut s, "pc", ("to='bob@b.test' type='subscribe'", ""));
    let fx = inbound(
        &mut s,
        "bob@b.test/x",
        SubscribeKind::Subscribed,
        "subscribed",
    );
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::To, false, false));
    assert_eq!(
        written(&fx),
        vec![
            "pc: iq alice@a.test/pc (set)",
            "pc: presence alice@a.test (subscribed)"
        ]
    );
    // an unasked-for approval changes nothing and is not shown
    let fx = inbound(
        &mut s,
        "carol@c.test",
        SubscribeKind::Subscribed,
        "subscribed",
    );
    assert!(fx.is_empty());
    assert!(!s.roster.contains_key("carol@c.test"));
}

#[test]
fn contact_unsubscribes_and_stops_seeing_the_user() {
    let mut s = alice_online();
    contact(&mut s, "bob@b.test", Sub::Both);
    let fx = inbound(
        &mut s,
        "bob@b.test/x",
        SubscribeKind::Unsubscribe,
        "unsubscribe",
    );
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::To, false, false));
    assert_eq!(
        routed(&fx),
        vec!["presence alice@a.test/pc→bob@b.test (unavailable)"]
    );
    assert_eq!(pushes(&fx), vec!["pc: bob@b.test to ask=- approved=-"]);
}

#[test]
fn user_cancels_a_contacts_subscription() {
    let mut s = alice_online();
    contact(&mut s, "bob@b.test", Sub::From);
    let fx = send(&mut s, "pc", ("to='bob@b.test' type='unsubscribed'", ""));
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test→bob@b.test (unsubscribed)",
            "presence alice@a.test/pc→bob@b.test (unavailable)",
        ]
    );
    assert_eq!(sub_of(&s, "bob@b.test"), (Sub::None, false, false));
}

#[test]
fn removing_a_contact_cancels_both_directions() {
    let mut s = alice_online();
    contact(&mut s, "bob@b.test", Sub::Both);
    let fx = s.remove_contact("bob@b.test").expect("removed");
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test→bob@b.test (unsubscribe)",
            "presence alice@a.test→bob@b.test (unsubscribed)",
            "presence alice@a.test/pc→bob@b.test (unavailable)",
        ]
    );
    assert_eq!(pushes(&fx), vec!["pc: bob@b.test remove ask=- approved=-"]);
    assert!(s.roster.is_empty());
    assert!(matches!(stored(&fx)[..], [StoreOp::RosterRemove { .. }]));
    assert_eq!(
        s.remove_contact("bob@b.test"),
        Err(ErrorCondition::ItemNotFound)
    );
}

#[test]
fn roster_pushes_go_only_to_resources_that_asked() {
    let mut s = alice_online();
    online(&mut s, "phone", 0);
    let fx = send(&mut s, "phone", ("to='bob@b.test' type='subscribe'", ""));
    assert_eq!(pushes(&fx).len(), 1);
    assert!(pushes(&fx)[0].starts_with("pc: "));
}

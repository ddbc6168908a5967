//! Messages that reach the account: delivery by §8.5, offline storage, errors.

use super::*;
use crate::stanza::ErrorCondition;
use std::time::{Duration, UNIX_EPOCH};

fn chat(ty: &str) -> Element {
    el(&format!(
        "<message xmlns='jabber:client' from='bob@b.test/x' to='alice@a.test' type='{ty}'><body>hi</body></message>"
    ))
}

fn decide(s: &State, msg: &Element) -> Vec<Effect> {
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    s.inbound_message(&jid("bob@b.test/x"), msg, now)
}

fn delivered(fx: &[Effect]) -> Vec<&str> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Deliver { resource } => Some(resource.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_highest_priority_resources_get_it() {
    let mut s = alice();
    online(&mut s, "pc", 1);
    online(&mut s, "phone", 5);
    online(&mut s, "tablet", 5);
    online(&mut s, "watch", -1);
    assert_eq!(
        delivered(&decide(&s, &chat("chat"))),
        vec!["phone", "tablet"]
    );
    // a headline goes to every non-negative resource
    assert_eq!(
        delivered(&decide(&s, &chat("headline"))),
        vec!["pc", "phone", "tablet"]
    );
}

#[test]
fn with_nobody_to_take_it_it_is_stored_stamped() {
    let mut s = alice();
    online(&mut s, "watch", -1);
    s.attach("idle"); // bound, no presence yet
    let fx = decide(&s, &chat("chat"));
    let [Effect::Store(StoreOp::OfflinePush { xml })] = &fx[..] else {
        panic!("stored: {fx:?}")
    };
    let stored: Element = xml.parse().expect("xml");
    let delay = stored
        .get_child("delay", crate::im::offline::NS_DELAY)
        .expect("delay stamp");
    assert_eq!(delay.attr("stamp"), Some("2023-11-14T22:13:20Z"));
    assert_eq!(delay.attr("from"), Some("a.test"));
    assert_eq!(
        stored
            .get_child("body", crate::ns::CLIENT)
            .map(|b| b.text()),
        Some("hi".into())
    );
}

#[test]
fn headlines_and_groupchat_are_not_stored() {
    let s = alice();
    assert!(decide(&s, &chat("headline")).is_empty());
    assert!(decide(&s, &chat("groupchat")).is_empty());
}

#[test]
fn no_account_or_a_blocked_sender_gets_an_error() {
    let bounce = vec![Effect::Bounce {
        condition: ErrorCondition::ServiceUnavailable,
        text: None,
    }];
    let mut s = alice();
    s.exists = Some(false);
    assert_eq!(decide(&s, &chat("chat")), bounce);
    let mut s = alice();
    online(&mut s, "pc", 0);
    s.blocklist.push("bob@b.test".into());
    assert_eq!(decide(&s, &chat("chat")), bounce);
}

//! Blocking decisions: who stops seeing the user, what is pushed.

use super::*;

fn push_items(c: &crate::im::account::BlockChange) -> Option<(String, Vec<String>)> {
    let p = c.push.as_ref()?;
    let items = p
        .children()
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect();
    Some((p.name().to_string(), items))
}

#[test]
fn newly_blocked_contacts_stop_seeing_the_user() {
    let mut s = alice();
    contact(&mut s, "bob@b.test", Sub::Both);
    contact(&mut s, "dave@d.test", Sub::To);
    online(&mut s, "pc", 0);
    let c = s.block(vec!["bob@b.test".into(), "dave@d.test".into()]);
    assert_eq!(
        routed(&c.effects),
        vec!["presence alice@a.test/pc→bob@b.test (unavailable)"],
        "dave never saw alice's presence"
    );
    assert_eq!(
        push_items(&c),
        Some((
            "block".into(),
            vec!["bob@b.test".into(), "dave@d.test".into()]
        ))
    );
    assert_eq!(s.blocklist, vec!["bob@b.test", "dave@d.test"]);
    // blocking again changes nothing and pushes nothing
    let c = s.block(vec!["bob@b.test".into()]);
    assert!(c.effects.is_empty() && c.push.is_none());
    // and presence no longer goes to bob
    let fx = send(&mut s, "pc", ("", "<show>away</show>"));
    assert!(routed(&fx).is_empty());
}

#[test]
fn unblock_some_or_all() {
    let mut s = alice();
    s.blocklist = vec!["a@x.test".into(), "b@x.test".into()];
    let c = s.unblock(vec!["b@x.test".into(), "zz@x.test".into()]);
    assert_eq!(
        push_items(&c),
        Some(("unblock".into(), vec!["b@x.test".into()]))
    );
    assert!(s.unblock(vec!["zz@x.test".into()]).push.is_none());
    let c = s.unblock(vec![]);
    assert_eq!(push_items(&c), Some(("unblock".into(), vec![])));
    assert!(s.blocklist.is_empty());
}

#[test]
fn every_session_gets_the_list_and_interested_ones_the_push() {
    let mut s = alice();
    s.attach("pc");
    s.attach("phone");
    s.resource_mut("phone").expect("phone").block_interest = true;
    let c = s.block(vec!["x@y.test".into()]);
    let fx = s.blocklist_pushes(c.push.as_ref().expect("changed"));
    assert_eq!(
        fx.iter()
            .filter(|e| matches!(e, Effect::Blocklist { .. }))
            .count(),
        2
    );
    assert_eq!(written(&fx), vec!["phone: iq alice@a.test/phone (set)"]);
}

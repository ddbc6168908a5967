//! Presence decisions: broadcast, initial presence, offline hand-over, directed
//! presence, unavailable, probes.

use super::*;

/// bob: both, carol: from, dave: to, erin: none, mallory: from but blocked.
fn with_contacts() -> State {
    let mut s = alice();
    contact(&mut s, "bob@b.test", Sub::Both);
    contact(&mut s, "carol@c.test", Sub::From);
    contact(&mut s, "dave@d.test", Sub::To);
    contact(&mut s, "erin@e.test", Sub::None);
    contact(&mut s, "mallory@m.test", Sub::From);
    s.blocklist.push("mallory@m.test".into());
    s
}

#[test]
fn initial_presence_goes_to_from_and_both_contacts_and_probes_to_and_both() {
    let mut s = with_contacts();
    s.attach("pc");
    let fx = send(&mut s, "pc", ("", "<priority>1</priority>"));
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test/pc→bob@b.test",
            "presence alice@a.test/pc→carol@c.test",
            "presence alice@a.test/pc→bob@b.test (probe)",
            "presence alice@a.test/pc→dave@d.test (probe)",
        ],
        "no presence to a blocked contact, nor to to/none contacts"
    );
    // the user's own resource sees its presence (RFC 6121 §4.2.2)
    assert_eq!(written(&fx), vec!["pc: presence alice@a.test/pc"]);
    let r = s.resource("pc").expect("resource");
    assert_eq!(r.priority, 1);
    assert!(r.presence.is_some());
}

#[test]
fn a_presence_update_is_broadcast_without_probes() {
    let mut s = with_contacts();
    online(&mut s, "pc", 0);
    let fx = send(&mut s, "pc", ("", "<show>away</show>"));
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test/pc→bob@b.test",
            "presence alice@a.test/pc→carol@c.test"
        ]
    );
    assert_eq!(written(&fx), vec!["pc: presence alice@a.test/pc"]);
}

#[test]
fn a_second_resource_sees_the_first_and_is_seen_by_it() {
    let mut s = alice();
    online(&mut s, "pc", 0);
    s.attach("phone");
    let fx = send(&mut s, "phone", ("", "<priority>-1</priority>"));
    assert_eq!(
        written(&fx),
        vec![
            "pc: presence alice@a.test/pc",
            "phone: presence alice@a.test/phone",
            "phone: presence alice@a.test/phone",
        ]
    );
    // the last is the pc's own presence, addressed to the phone
    let Effect::Write { stanza, .. } = &fx[2] else {
        panic!("a write")
    };
    assert_eq!(stanza.attr("from"), Some("alice@a.test/pc"));
}

#[test]
fn pending_requests_are_shown_at_initial_presence() {
    let mut s = alice();
    s.pending.insert(
        "zoe@z.test".into(),
        "<presence xmlns='jabber:client' from='zoe@z.test' type='subscribe'/>".into(),
    );
    s.attach("pc");
    let fx = send(&mut s, "pc", ("", ""));
    assert_eq!(
        written(&fx),
        vec![
            "pc: presence alice@a.test/pc",
            "pc: presence alice@a.test (subscribe)"
        ]
    );
    // and only at the initial one
    let fx = send(&mut s, "pc", ("", "<show>dnd</show>"));
    assert_eq!(written(&fx), vec!["pc: presence alice@a.test/pc"]);
}

#[test]
fn offline_messages_go_to_the_first_non_negative_presence_once() {
    let mut s = alice();
    s.offline_waiting = true;
    s.attach("pc");
    let fx = send(&mut s, "pc", ("", "<priority>-1</priority>"));
    assert!(stored(&fx).is_empty(), "not at a negative priority");
    let fx = send(&mut s, "pc", ("", "<priority>0</priority>"));
    assert_eq!(
        stored(&fx),
        vec![&StoreOp::OfflineDeliver {
            resource: "pc".into()
        }]
    );
    let fx = send(&mut s, "pc", ("", "<priority>3</priority>"));
    assert!(stored(&fx).is_empty(), "only once per resource");
}

#[test]
fn no_storage_trip_when_nothing_is_waiting() {
    let mut s = alice();
    s.attach("pc");
    let fx = send(&mut s, "pc", ("", ""));
    assert!(stored(&fx).is_empty());
}

#[test]
fn directed_presence_to_a_stranger_is_followed_by_unavailable() {
    let mut s = with_contacts();
    online(&mut s, "pc", 0);
    let fx = send(&mut s, "pc", ("to='room@muc.test/alice'", ""));
    assert_eq!(
        routed(&fx),
        vec!["presence alice@a.test/pc→room@muc.test/alice"]
    );
    // to a contact subscribed anyway, nothing is remembered
    send(&mut s, "pc", ("to='carol@c.test/x'", ""));
    let r = s.resource("pc").expect("resource");
    assert_eq!(
        r.directed.iter().collect::<Vec<_>>(),
        vec!["room@muc.test/alice"]
    );
    let fx = send(&mut s, "pc", ("type='unavailable'", ""));
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test/pc→bob@b.test (unavailable)",
            "presence alice@a.test/pc→carol@c.test (unavailable)",
            // today's behaviour, kept by this refactoring: unavailable is not filtered
            // by the blocklist (XEP-0191 only needs it at the time of blocking)
            "presence alice@a.test/pc→mallory@m.test (unavailable)",
            "presence alice@a.test/pc→room@muc.test/alice (unavailable)",
        ]
    );
    assert_eq!(
        written(&fx),
        vec!["pc: presence alice@a.test/pc (unavailable)"]
    );
    assert!(s.resource("pc").expect("still bound").presence.is_none());
}

#[test]
fn directed_unavailable_forgets_the_target() {
    let mut s = alice();
    online(&mut s, "pc", 0);
    send(&mut s, "pc", ("to='x@y.test'", ""));
    let fx = send(&mut s, "pc", ("to='x@y.test' type='unavailable'", ""));
    assert_eq!(
        routed(&fx),
        vec!["presence alice@a.test/pc→x@y.test (unavailable)"]
    );
    assert!(s.resource("pc").expect("resource").directed.is_empty());
    let fx = s.detach("pc");
    assert_eq!(
        written(&fx),
        vec!["pc: presence alice@a.test/pc (unavailable)"]
    );
    assert!(routed(&fx).is_empty(), "x@y.test was told already");
}

#[test]
fn detach_sends_unavailable_to_contacts_and_own_resources() {
    let mut s = with_contacts();
    online(&mut s, "pc", 0);
    online(&mut s, "phone", 0);
    let fx = s.detach("phone");
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test/phone→bob@b.test (unavailable)",
            "presence alice@a.test/phone→carol@c.test (unavailable)",
            "presence alice@a.test/phone→mallory@m.test (unavailable)",
        ]
    );
    assert_eq!(
        written(&fx),
        vec![
            "pc: presence alice@a.test/pc (unavailable)",
            "phone: presence alice@a.test/phone (unavailable)",
        ]
    );
    assert!(s.resource("phone").is_none());
    // a session that never sent presence leaves quietly
    s.attach("tablet");
    assert!(s.detach("tablet").is_empty());
}

#[test]
fn probes_are_answered_for_subscribed_contacts_only() {
    let mut s = with_contacts();
    let mut fx = Vec::new();
    s.probe(&jid("carol@c.test/home"), &mut fx);
    assert_eq!(
        routed(&fx),
        vec!["presence alice@a.test→carol@c.test/home (unavailable)"],
        "nobody online: unavailable from the bare JID"
    );
    online(&mut s, "pc", 0);
    online(&mut s, "phone", 2);
    let mut fx = Vec::new();
    s.probe(&jid("carol@c.test/home"), &mut fx);
    assert_eq!(
        routed(&fx),
        vec![
            "presence alice@a.test/pc→carol@c.test/home",
            "presence alice@a.test/phone→carol@c.test/home",
        ]
    );
    let mut fx = Vec::new();
    s.probe(&jid("dave@d.test"), &mut fx);
    s.probe(&jid("stranger@x.test"), &mut fx);
    assert!(fx.is_empty(), "dave is not subscribed to alice");
    s.probe(&jid("alice@a.test/other"), &mut fx);
    assert_eq!(fx.len(), 2, "the user may probe herself");
}

#[test]
fn clients_do_not_probe_and_bad_addresses_are_ignored() {
    let mut s = with_contacts();
    online(&mut s, "pc", 0);
    assert!(send(&mut s, "pc", ("to='bob@b.test' type='probe'", "")).is_empty());
    assert!(send(&mut s, "pc", ("to='a@@b'", "")).is_empty());
}

#[test]
fn a_blocked_probe_or_request_gets_nothing() {
    let mut s = with_contacts();
    online(&mut s, "pc", 0);
    let p = el("<presence xmlns='jabber:client' type='probe'/>");
    let fx = s.inbound_subscription(
        &jid("mallory@m.test/x"),
        crate::stanza::SubscribeKind::Probe,
        p,
    );
    assert!(fx.is_empty());
}

#[test]
fn attach_hands_over_the_blocklist() {
    let mut s = alice();
    assert!(s.attach("pc").is_empty());
    s.blocklist.push("x@y.test".into());
    assert_eq!(
        s.attach("phone"),
        vec![Effect::Blocklist {
            resource: "phone".into()
        }]
    );
}

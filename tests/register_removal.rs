//! In-band account removal (XEP-0077 §3.2) against the real daemon: the answer, then
//! every session ends; nothing written behind the removal survives it or is inherited by
//! the next registrant of the name; a stream that authenticated before the removal cannot
//! bind after it.

mod common;
use common::register::*;
use common::*;

#[tokio::test]
async fn removal_answers_then_ends_every_session_and_the_account_is_gone() {
    let d = Daemon::start();
    let (mut a1, _) = Raw::login(d.starttls, DOMAIN, "alice", "alice-pw", "one").await;
    let (mut a2, _) = Raw::login(d.starttls, DOMAIN, "alice", "alice-pw", "two").await;
    let (mut b, _) = Raw::login(d.starttls, DOMAIN, "bob", "bob-pw", "b").await;
    // alice and bob are contacts both ways
    mutual_contacts(&mut a1, "alice", &mut b, "bob").await;

    a1.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    let end = a1.read_to_close().await;
    let result = end.find("id='rm'").expect("answered");
    let error = end
        .find("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>")
        .expect("stream error");
    assert!(result < error, "the answer comes first: {end}");
    assert!(end[..error].contains("type='result'"), "{end}");
    let other = a2.read_to_close().await;
    assert!(
        other.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{other}"
    );
    // bob's subscription to alice was cancelled (RFC 6121 §2.5.2 on alice's side)
    b.wait_for("type='unsubscribed'").await;
    b.wait_for("subscription='none'").await;
    // the account cannot log in and receives nothing
    assert!(!login_works(&d, "alice", "alice-pw").await);
    b.send("<message to='alice@localhost' id='m' type='chat'><body>hi</body></message>")
        .await;
    let bounce = b.wait_for("id='m'").await;
    assert!(bounce.contains("type='error'"), "{bounce}");
    let list = d.cli(&["account", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "bob@localhost\n");
}

#[tokio::test]
async fn a_removed_name_can_be_registered_again_from_scratch() {
    let d = Daemon::with(signup_on());
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r").await;
    a.send("<iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Old Alice</FN></vCard></iq>")
        .await;
    a.wait_for("id='v'").await;
    a.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    a.read_to_close().await;
    let (mut r, _) = tls_stream(&d).await;
    r.send(&register_set("s", "alice", "fresh-pw")).await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    let (mut a, _) = Raw::login(d.starttls, DOMAIN, "alice", "fresh-pw", "r").await;
    let v = ask(
        &mut a,
        "<iq type='get' id='g'><vCard xmlns='vcard-temp'/></iq>",
        "g",
    )
    .await;
    assert!(!v.contains("Old Alice"), "nothing of the old account: {v}");
    let roster = ask(
        &mut a,
        "<iq type='get' id='q'><query xmlns='jabber:iq:roster'/></iq>",
        "q",
    )
    .await;
    assert!(!roster.contains("<item"), "{roster}");
}

#[tokio::test]
async fn writes_that_follow_a_removal_are_refused_and_never_inherited() {
    let d = Daemon::with(signup_on());
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r").await;
    // the removal and writes behind it in the same read: vCard, private XML, roster,
    // blocklist, presence
    a.send(
        "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>\
         <iq type='set' id='v'><vCard xmlns='vcard-temp'><FN>Ghost</FN></vCard></iq>\
         <iq type='set' id='p'><query xmlns='jabber:iq:private'><ghost xmlns='urn:x:ghost'>boo</ghost></query></iq>\
         <iq type='set' id='ro'><query xmlns='jabber:iq:roster'><item jid='ghost@localhost'/></query></iq>\
         <iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='ghost@localhost'/></block></iq>\
         <presence/>",
    )
    .await;
    let end = a.read_to_close().await;
    assert!(end.contains("id='rm'"), "{end}");
    for id in ["v", "p", "ro", "b"] {
        if let Some(at) = end.find(&format!("id='{id}'")) {
            let reply = &end[end[..at].rfind('<').unwrap_or(0)..];
            assert!(
                !reply.starts_with("<iq type='result'"),
                "{id} accepted: {end}"
            );
        }
    }
    assert_eq!(register(&d, "alice", "fresh-pw").await, "result");
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "fresh-pw", "r").await;
    for (req, id, ghost) in [
        (
            "<iq type='get' id='g1'><vCard xmlns='vcard-temp'/></iq>",
            "g1",
            "Ghost",
        ),
        (
            "<iq type='get' id='g2'><query xmlns='jabber:iq:private'><ghost xmlns='urn:x:ghost'/></query></iq>",
            "g2",
            "boo",
        ),
        (
            "<iq type='get' id='g3'><query xmlns='jabber:iq:roster'/></iq>",
            "g3",
            "ghost@",
        ),
        (
            "<iq type='get' id='g4'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
            "g4",
            "ghost@",
        ),
    ] {
        let reply = ask(&mut a, req, id).await;
        assert!(reply.contains("type='result'"), "{reply}");
        assert!(
            !reply.contains(ghost),
            "inherited from the removed account: {reply}"
        );
    }
}

#[tokio::test]
async fn a_stream_authenticated_before_a_removal_cannot_bind_after_it() {
    let d = Daemon::with(signup_on());
    // two streams authenticate as alice and wait before binding
    let mut late = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = tls_stream(&d).await;
        let ok = s.auth_scram("SCRAM-SHA-256", "alice", "alice-pw").await;
        assert!(ok.starts_with("<success"), "{ok}");
        late.push(s);
    }
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r").await;
    a.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    a.read_to_close().await;
    let mut second = late.pop().expect("stream");
    let mut first = late.pop().expect("stream");
    // the account is gone: the session ends at once
    first.bind(Some("late")).await;
    let end = first.read_to_close().await;
    assert!(
        end.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{end}"
    );
    // someone registers the name again: the old authentication is still not theirs
    assert_eq!(register(&d, "alice", "new-owner-pw").await, "result");
    second.bind(Some("later")).await;
    let end = second.read_to_close().await;
    assert!(
        end.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{end}"
    );
    // the new owner logs in and stays
    let (mut n, _) = Raw::login(d.starttls, DOMAIN, "alice", "new-owner-pw", "n").await;
    let info = ask(
        &mut n,
        "<iq type='get' id='i'><query xmlns='jabber:iq:register'/></iq>",
        "i",
    )
    .await;
    assert!(info.contains("<registered/>"), "{info}");
}

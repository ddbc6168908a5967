//! Instant messaging and presence (RFC 6121) against the real daemon: rosters,
//! subscriptions, presence, offline messages, and the per-account data a client needs.

mod common;
use common::*;
use std::time::Duration;

const D: &str = "localhost";

async fn login(d: &Daemon, user: &str, res: &str) -> Raw {
    Raw::login(d.starttls, D, user, &format!("{user}-pw"), res)
        .await
        .0
}

async fn roster_get(r: &mut Raw, id: &str) -> String {
    r.send(&format!(
        "<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>"
    ))
    .await;
    r.wait_for(&format!("id='{id}'")).await
}

#[tokio::test]
async fn roster_set_get_remove_with_pushes_and_versions() {
    let d = Daemon::start();
    let mut a1 = login(&d, "alice", "one").await;
    let mut a2 = login(&d, "alice", "two").await;
    let mut a3 = login(&d, "alice", "three").await; // never asks for the roster
    let r = roster_get(&mut a1, "g1").await;
    assert!(r.contains("type='result'") && r.contains("ver='0'"), "{r}");
    roster_get(&mut a2, "g2").await;
    a1.send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bobby'><group>Friends</group></item></query></iq>").await;
    let res = a1.wait_for("id='s1'").await;
    assert!(res.contains("type='result'"), "{res}");
    for a in [&mut a1, &mut a2] {
        let push = a.wait_for("type='set'").await;
        assert!(
            push.contains("ver='1'")
                && push.contains("jid='bob@localhost'")
                && push.contains("name='Bobby'"),
            "{push}"
        );
        assert!(
            push.contains("<group>Friends</group>") && push.contains("subscription='none'"),
            "{push}"
        );
    }
    a3.expect_only_presence(Duration::from_millis(200)).await;
    // the same version: nothing to send; an older one: the whole roster
    a1.send("<iq type='get' id='g3'><query xmlns='jabber:iq:roster' ver='1'/></iq>")
        .await;
    let r = a1.wait_for("id='g3'").await;
    assert!(r.contains("type='result'") && !r.contains("<query"), "{r}");
    a1.send("<iq type='get' id='g4'><query xmlns='jabber:iq:roster' ver='0'/></iq>")
        .await;
    let r = a1.wait_for("id='g4'").await;
    assert!(
        r.contains("jid='bob@localhost'") && r.contains("ver='1'"),
        "{r}"
    );
    // bad sets
    a1.send("<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='x@localhost'/><item jid='y@localhost'/></query></iq>").await;
    assert!(a1.wait_for("id='s2'").await.contains("<bad-request"));
    a1.send("<iq type='set' id='s3'><query xmlns='jabber:iq:roster'><item jid='nobody@localhost' subscription='remove'/></query></iq>").await;
    assert!(a1.wait_for("id='s3'").await.contains("<item-not-found"));
    // remove
    a1.send("<iq type='set' id='s4'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>").await;
    assert!(a1.wait_for("id='s4'").await.contains("type='result'"));
    let push = a2.wait_for("subscription='remove'").await;
    assert!(
        push.contains("ver='2'") && push.contains("jid='bob@localhost'"),
        "{push}"
    );
    // it is stored: a fresh login sees the version
    let mut a4 = login(&d, "alice", "four").await;
    let r = roster_get(&mut a4, "g5").await;
    assert!(r.contains("ver='2'") && !r.contains("bob@localhost"), "{r}");
}

/// alice and bob, both online and interested in their rosters, become mutual contacts.
async fn befriend(a: &mut Raw, b: &mut Raw) {
    roster_get(a, "ra").await;
    roster_get(b, "rb").await;
    a.send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    let push = a.wait_for("ask='subscribe'").await;
    assert!(push.contains("subscription='none'"), "{push}");
    let req = b.wait_for("type='subscribe'").await;
    assert!(
        req.contains("from='alice@localhost'") && !req.contains("from='alice@localhost/"),
        "bare from: {req}"
    );
    b.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    assert!(
        b.wait_for("subscription='from'")
            .await
            .contains("jid='alice@localhost'")
    );
    assert!(
        a.wait_for("type='subscribed'")
            .await
            .contains("from='bob@localhost'")
    );
    assert!(
        a.wait_for("subscription='to'")
            .await
            .contains("jid='bob@localhost'")
    );
    // bob approved: his presence reaches alice
    let p = a.wait_for("from='bob@localhost/").await;
    assert!(!p.contains("type="), "available presence: {p}");
    b.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    a.wait_for("type='subscribe'").await;
    a.send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    assert!(
        a.wait_for("subscription='both'")
            .await
            .contains("jid='bob@localhost'")
    );
    assert!(
        b.wait_for("subscription='both'")
            .await
            .contains("jid='alice@localhost'")
    );
    b.wait_for("from='alice@localhost/").await;
}

#[tokio::test]
async fn subscription_handshake_and_presence_both_ways() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    let mut b = login(&d, "bob", "phone").await;
    befriend(&mut a, &mut b).await;
    // presence changes reach the contact
    a.send("<presence><show>away</show><status>lunch</status></presence>")
        .await;
    let p = b.wait_for("<status>lunch</status>").await;
    assert!(
        p.contains("from='alice@localhost/pc'") && p.contains("<show>away</show>"),
        "{p}"
    );
    // the TCP connection just dies: unavailable is broadcast
    drop(b);
    let p = a.wait_for("type='unavailable'").await;
    assert!(p.contains("from='bob@localhost/phone'"), "{p}");
    // a new login probes: alice's current presence arrives
    let mut b2 = login(&d, "bob", "tablet").await;
    let p = b2.wait_for("from='alice@localhost/pc'").await;
    assert!(
        p.contains("<show>away</show>"),
        "probe answered with the last presence: {p}"
    );
    // unsubscribe: bob stops seeing alice; alice is told
    b2.send("<presence to='alice@localhost' type='unsubscribe'/>")
        .await;
    let p = a.wait_for("type='unsubscribe'").await;
    assert!(p.contains("from='bob@localhost'"), "{p}");
    let p = b2.wait_for("type='unavailable'").await;
    assert!(p.contains("from='alice@localhost/pc'"), "{p}");
    a.send("<presence><status>back</status></presence>").await;
    a.wait_for("<status>back</status>").await; // own echo
    b2.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn subscription_request_to_offline_contact_waits_for_login() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    roster_get(&mut a, "r").await;
    a.send(
        "<presence to='bob@localhost' type='subscribe'><status>hi, it's alice</status></presence>",
    )
    .await;
    a.wait_for("ask='subscribe'").await;
    let mut b = login(&d, "bob", "phone").await;
    let req = b.wait_for("type='subscribe'").await;
    assert!(
        req.contains("from='alice@localhost'") && req.contains("hi, it's alice"),
        "{req}"
    );
    // it is delivered again at every login until answered
    drop(b);
    let mut b = login(&d, "bob", "laptop").await;
    b.wait_for("type='subscribe'").await;
    b.send("<presence to='alice@localhost' type='unsubscribed'/>")
        .await;
    let deny = a.wait_for("type='unsubscribed'").await;
    assert!(deny.contains("from='bob@localhost'"), "{deny}");
    drop(b);
    let mut b = login(&d, "bob", "third").await;
    b.send("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let next = b.next_stanza().await;
    assert!(
        next.contains("id='p'"),
        "no request after the answer: {next}"
    );
}

#[tokio::test]
async fn pre_approval_is_automatic_acceptance() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    let mut b = login(&d, "bob", "phone").await;
    roster_get(&mut b, "rb").await;
    // bob pre-approves alice: stored, not sent
    b.send("<presence to='alice@localhost' type='subscribed'/>")
        .await;
    let push = b.wait_for("approved='true'").await;
    assert!(push.contains("subscription='none'"), "{push}");
    a.send("<presence to='bob@localhost' type='subscribe'/>")
        .await;
    assert!(
        a.wait_for("type='subscribed'")
            .await
            .contains("from='bob@localhost'")
    );
    let push = b.wait_for("subscription='from'").await;
    assert!(!push.contains("approved"), "{push}");
}

#[tokio::test]
async fn directed_presence_and_unavailable_at_logout() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    let mut b = login(&d, "bob", "phone").await;
    a.send("<presence to='bob@localhost/phone'><status>psst</status></presence>")
        .await;
    let p = b.wait_for("psst").await;
    assert!(p.contains("from='alice@localhost/pc'"), "{p}");
    a.send("</stream:stream>").await;
    let p = b.wait_for("type='unavailable'").await;
    assert!(p.contains("from='alice@localhost/pc'"), "{p}");
}

#[tokio::test]
async fn offline_messages_are_delivered_at_initial_presence() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    for i in 1..=3 {
        a.send(&format!(
            "<message to='bob@localhost' type='chat' id='o{i}'><body>offline {i}</body></message>"
        ))
        .await;
    }
    // headline and chat states are not kept
    a.send("<message to='bob@localhost' type='headline'><body>news</body></message>")
        .await;
    a.send("<message to='bob@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>").await;
    d.wait_log("message stored offline", 3);
    // no delivery before initial presence, none at negative priority
    let (mut b, _) = Raw::bound(d.starttls, D, "bob", "bob-pw", "phone").await;
    b.send("<presence><priority>-1</priority></presence>").await;
    b.wait_for("<priority>-1</priority>").await;
    b.expect_silence(Duration::from_millis(300)).await;
    b.send("<presence><priority>1</priority></presence>").await;
    for i in 1..=3 {
        let m = b.wait_for(&format!("offline {i}")).await;
        assert!(
            m.contains("from='alice@localhost/pc'") && m.contains(&format!("id='o{i}'")),
            "{m}"
        );
        assert!(
            m.contains("<delay xmlns='urn:xmpp:delay' from='localhost' stamp='"),
            "{m}"
        );
    }
    b.wait_for("<priority>1</priority>").await;
    b.expect_silence(Duration::from_millis(300)).await;
    // delivered once: a new login gets nothing more
    drop(b);
    let mut b = login(&d, "bob", "again").await;
    b.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn offline_storage_limit_returns_an_error() {
    let d = Daemon::with(Options {
        extra: "[storage]\nmax_offline_messages = 2\n".into(),
        ..Options::default()
    });
    let mut a = login(&d, "alice", "pc").await;
    for i in 1..=3 {
        a.send(&format!(
            "<message to='bob@localhost' type='chat' id='q{i}'><body>{i}</body></message>"
        ))
        .await;
    }
    let e = a.wait_for("id='q3'").await;
    assert!(
        e.contains("type='error'") && e.contains("<service-unavailable"),
        "{e}"
    );
    assert!(e.contains("offline storage is full"), "{e}");
    a.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn accepted_offline_message_survives_kill_9() {
    let mut d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    a.send("<message to='bob@localhost' type='chat' id='k1'><body>survive this</body></message>")
        .await;
    d.wait_log("message stored offline", 1);
    drop(a);
    d.kill9();
    d.spawn();
    let mut b = login(&d, "bob", "phone").await;
    let m = b.wait_for("survive this").await;
    assert!(m.contains("id='k1'"), "{m}");
}

#[tokio::test]
async fn message_to_a_gone_resource_reaches_another_or_waits() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    let mut b = login(&d, "bob", "other").await;
    a.send("<message to='bob@localhost/gone' type='chat'><body>to any</body></message>")
        .await;
    let m = b.wait_for("to any").await;
    assert!(m.contains("to='bob@localhost/gone'"), "{m}");
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send("<message to='bob@localhost/gone' type='chat'><body>later</body></message>")
        .await;
    d.wait_log("message stored offline", 1);
    let mut b = login(&d, "bob", "back").await;
    b.wait_for("later").await;
}

#[tokio::test]
async fn vcard_private_storage_and_account_disco() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    let mut b = login(&d, "bob", "phone").await;
    a.send("<iq type='get' id='v0'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = a.wait_for("id='v0'").await;
    assert!(
        r.contains("type='result'") && r.contains("<vCard xmlns='vcard-temp'/>"),
        "empty vCard: {r}"
    );
    a.send("<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>al</NICKNAME></vCard></iq>").await;
    assert!(a.wait_for("id='v1'").await.contains("type='result'"));
    b.send("<iq type='get' id='v2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = b.wait_for("id='v2'").await;
    assert!(
        r.contains("<FN>Alice Liddell</FN>") && r.contains("from='alice@localhost'"),
        "{r}"
    );
    // private XML (XEP-0049): only for the account itself
    a.send("<iq type='set' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><color>blue</color></prefs></query></iq>").await;
    assert!(a.wait_for("id='p1'").await.contains("type='result'"));
    a.send("<iq type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>").await;
    assert!(a.wait_for("id='p2'").await.contains("<color>blue</color>"));
    a.send("<iq type='get' id='p3'><query xmlns='jabber:iq:private'><x xmlns='jabber:iq:private'/></query></iq>").await;
    assert!(a.wait_for("id='p3'").await.contains("<not-acceptable"));
    b.send("<iq type='get' id='p4' to='alice@localhost'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>").await;
    let r = b.wait_for("id='p4'").await;
    assert!(r.contains("type='error'") && !r.contains("blue"), "{r}");
    // disco#info of an account
    b.send("<iq type='get' id='d1' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = b.wait_for("id='d1'").await;
    assert!(
        r.contains("category='account'") && r.contains("type='registered'"),
        "{r}"
    );
    // ... and of someone who does not exist
    b.send("<iq type='get' id='d2' to='nobody@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    assert!(b.wait_for("id='d2'").await.contains("<service-unavailable"));
}

#[tokio::test]
async fn blocking_command() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    let mut a2 = login(&d, "alice", "phone").await;
    let mut b = login(&d, "bob", "phone").await;
    a2.send("<iq type='get' id='bl0'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    assert!(
        a2.wait_for("id='bl0'")
            .await
            .contains("<blocklist xmlns='urn:xmpp:blocking'/>")
    );
    a.send("<iq type='set' id='bl1'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>").await;
    assert!(a.wait_for("id='bl1'").await.contains("type='result'"));
    let push = a2.wait_for("<block xmlns='urn:xmpp:blocking'>").await;
    assert!(push.contains("jid='bob@localhost'"), "{push}");
    // bob cannot reach alice
    b.send("<message to='alice@localhost/pc' type='chat' id='x1'><body>let me in</body></message>")
        .await;
    let e = b.wait_for("id='x1'").await;
    assert!(
        e.contains("type='error'") && e.contains("<service-unavailable"),
        "{e}"
    );
    // alice cannot reach bob
    a.send("<message to='bob@localhost' type='chat' id='x2'><body>hi</body></message>")
        .await;
    let e = a.wait_for("id='x2'").await;
    assert!(
        e.contains("<not-acceptable") && e.contains("<blocked xmlns='urn:xmpp:blocking:errors'/>"),
        "{e}"
    );
    // unblock everything
    a.send("<iq type='set' id='bl2'><unblock xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    assert!(a.wait_for("id='bl2'").await.contains("type='result'"));
    a2.wait_for("<unblock xmlns='urn:xmpp:blocking'/>").await;
    b.send("<message to='alice@localhost/pc' type='chat' id='x3'><body>now?</body></message>")
        .await;
    assert!(
        a.wait_for("now?")
            .await
            .contains("from='bob@localhost/phone'")
    );
    // stored: a new login sees an empty list, then a blocked entry after blocking again
    a.send("<iq type='set' id='bl3'><block xmlns='urn:xmpp:blocking'><item jid='spam.example'/></block></iq>").await;
    a.wait_for("id='bl3'").await;
    let mut a3 = login(&d, "alice", "tablet").await;
    a3.send("<iq type='get' id='bl4'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
        .await;
    assert!(a3.wait_for("id='bl4'").await.contains("jid='spam.example'"));
}

#[tokio::test]
async fn stream_features_after_auth_announce_roster_versioning() {
    let d = Daemon::start();
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    assert!(
        r.auth_plain("alice", "alice-pw")
            .await
            .starts_with("<success")
    );
    let f = r.open().await;
    assert!(
        f.contains("<ver xmlns='urn:xmpp:features:rosterver'/>"),
        "{f}"
    );
    assert!(
        f.contains("<sub xmlns='urn:xmpp:features:pre-approval'/>"),
        "{f}"
    );
}

#[tokio::test]
async fn server_disco_lists_what_works() {
    let d = Daemon::start();
    let mut a = login(&d, "alice", "pc").await;
    a.send("<iq type='get' id='di' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = a.wait_for("id='di'").await;
    for f in [
        "msgoffline",
        "urn:xmpp:blocking",
        "vcard-temp",
        "jabber:iq:private",
        "urn:xmpp:ping",
        "jabber:iq:version",
    ] {
        assert!(r.contains(&format!("var='{f}'")), "{f} missing: {r}");
    }
}

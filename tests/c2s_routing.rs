//! Routing through the registry: messages and iq between accounts, iq to the server,
//! and errors for what cannot be delivered.

mod common;
use common::*;
use std::time::Duration;

const D: &str = "localhost";

#[tokio::test]
async fn message_between_two_accounts_keeps_payload_and_stamps_from() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "phone").await;
    a.send("<message to='bob@localhost' type='chat' id='m1'><body>hi &amp; welcome</body><x xmlns='urn:example'/></message>").await;
    let m = b.next_stanza().await;
    assert!(m.contains("from='alice@localhost/pc'"), "{m}");
    assert!(m.contains("to='bob@localhost'"), "{m}");
    assert!(m.contains("<body>hi &amp; welcome</body>"), "{m}");
    assert!(m.contains("<x xmlns='urn:example'/>"), "{m}");
    // full-JID message
    b.send("<message to='alice@localhost/pc' type='chat'><body>back</body></message>")
        .await;
    let m = a.next_stanza().await;
    assert!(
        m.contains("from='bob@localhost/phone'") && m.contains("<body>back</body>"),
        "{m}"
    );
}

#[tokio::test]
async fn iq_between_full_jids_and_the_result_comes_back() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "phone").await;
    a.send(
        "<iq to='bob@localhost/phone' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>",
    )
    .await;
    let q = b.next_stanza().await;
    assert!(
        q.contains("from='alice@localhost/pc'") && q.contains("id='v1'"),
        "{q}"
    );
    b.send("<iq to='alice@localhost/pc' type='result' id='v1'><query xmlns='jabber:iq:version'><name>bobclient</name></query></iq>").await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='result'")
            && r.contains("bobclient")
            && r.contains("from='bob@localhost/phone'"),
        "{r}"
    );
}

#[tokio::test]
async fn iq_to_the_server() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    a.send("<iq to='localhost' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='result'") && r.contains("id='p'") && r.contains("from='localhost'"),
        "{r}"
    );
    a.send("<iq to='localhost' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let r = a.next_stanza().await;
    assert!(r.contains("<name>xmppd</name>"), "{r}");
    a.send("<iq to='localhost' type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("category='server'") && r.contains("var='urn:xmpp:ping'"),
        "{r}"
    );
    a.send("<iq to='localhost' type='get' id='u'><query xmlns='urn:example:unknown'/></iq>")
        .await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='error'") && r.contains("<service-unavailable"),
        "{r}"
    );
    // an iq without a child is malformed
    a.send("<iq to='localhost' type='get' id='e'/>").await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='error'") && r.contains("<bad-request"),
        "{r}"
    );
}

#[tokio::test]
async fn iq_to_an_absent_resource_is_service_unavailable() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    a.send(
        "<iq to='bob@localhost/nowhere' type='get' id='x'><query xmlns='jabber:iq:version'/></iq>",
    )
    .await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='error'")
            && r.contains("<service-unavailable")
            && r.contains("from='bob@localhost/nowhere'"),
        "{r}"
    );
}

#[tokio::test]
async fn message_to_offline_and_remote_return_errors() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    a.send("<message to='nobody@localhost' type='chat' id='m1'><body>x</body></message>")
        .await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='error'") && r.contains("id='m1'") && r.contains("<service-unavailable"),
        "{r}"
    );
    a.send("<message to='someone@elsewhere.test' type='chat' id='m2'><body>x</body></message>")
        .await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='error'")
            && r.contains("id='m2'")
            && r.contains("<remote-server-not-found"),
        "{r}"
    );
}

#[tokio::test]
async fn bare_jid_message_goes_to_highest_priority() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let (mut low, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "low").await;
    let (mut high, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "high").await;
    high.send("<presence><priority>10</priority></presence>")
        .await;
    high.wait_for("<priority>10</priority>").await;
    low.send("<presence><priority>1</priority></presence>")
        .await;
    low.wait_for("from='bob@localhost/low' to='bob@localhost/low'><priority>")
        .await;
    high.wait_for("from='bob@localhost/low' to='bob@localhost/high'><priority>")
        .await;
    a.send("<message to='bob@localhost' type='chat'><body>to the best</body></message>")
        .await;
    let m = high.next_non_presence().await;
    assert!(m.contains("to the best"), "{m}");
    // low gets presence updates, never the message
    while let Some(s) = low
        .try_read_until("</presence>", Duration::from_millis(300))
        .await
    {
        assert!(!s.contains("to the best"), "{s}");
    }
}

#[tokio::test]
async fn spoofed_from_is_a_stream_error_and_others_carry_on() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "phone").await;
    a.send("<message from='bob@localhost/phone' to='bob@localhost' type='chat'><body>fake</body></message>").await;
    let rest = a.read_to_close().await;
    assert!(rest.contains("<invalid-from"), "{rest}");
    b.expect_silence(Duration::from_millis(200)).await;
    // bob is unaffected
    b.send("<iq to='localhost' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    assert!(b.next_stanza().await.contains("type='result'"));
}

#[tokio::test]
async fn own_bare_from_is_accepted_and_rewritten() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "phone").await;
    a.send("<message from='alice@localhost' to='bob@localhost/phone'><body>ok</body></message>")
        .await;
    let m = b.next_stanza().await;
    assert!(m.contains("from='alice@localhost/pc'"), "{m}");
}

#[tokio::test]
async fn malformed_to_is_jid_malformed() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    a.send("<message to='a@@b' id='j1'><body>x</body></message>")
        .await;
    let r = a.next_stanza().await;
    assert!(
        r.contains("type='error'") && r.contains("<jid-malformed"),
        "{r}"
    );
}

#[tokio::test]
async fn session_iq_for_old_clients() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    a.send("<iq type='set' id='s1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>")
        .await;
    let r = a.next_stanza().await;
    assert!(r.contains("type='result'") && r.contains("id='s1'"), "{r}");
}

#[tokio::test]
async fn client_stream_error_closes_cleanly() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    a.send("<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>").await;
    let rest = a.read_to_close().await;
    assert!(rest.trim_end().ends_with("</stream:stream>"), "{rest}");
    assert!(!rest.contains("<stream:error>"), "no error of ours: {rest}");
}

#[tokio::test]
async fn sessions_per_account_are_limited() {
    let d = Daemon::with(Options {
        extra: "[limits]\nmax_sessions_per_account = 2\n".into(),
        ..Options::default()
    });
    let _a = Raw::login(d.starttls, D, "alice", "alice-pw", "1").await;
    let _b = Raw::login(d.starttls, D, "alice", "alice-pw", "2").await;
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    assert!(
        r.auth_plain("alice", "alice-pw")
            .await
            .starts_with("<success")
    );
    r.open().await;
    r.send("<iq type='set' id='b3'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .await;
    let e = r.next_stanza().await;
    assert!(
        e.contains("type='error'") && e.contains("<resource-constraint"),
        "{e}"
    );
}

/// RFC 6120 §10.1: stanzas between two entities arrive in the order sent. Alice sends
/// while Bob's resource binds, so her first messages to it find no route on her
/// thread's copy of the session table and go through the registry, later ones find it
/// there: a later one must not overtake an earlier one on the direct path.
#[tokio::test]
async fn messages_sent_while_the_recipient_binds_arrive_in_order() {
    const N: usize = 2000;
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    // Another resource of Alice's keeps the registry busy (errors to another domain end
    // there, unanswered), so what goes through it lags behind what goes direct
    let (mut c, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "busy").await;
    let busy = tokio::spawn(async move {
        let batch: String = (0..100)
            .map(|i| format!("<message to='x@elsewhere.example' type='error' id='e{i}'/>"))
            .collect();
        for _ in 0..100 {
            c.send(&batch).await;
        }
        c
    });
    let sender = tokio::spawn(async move {
        for i in 0..N {
            a.send(&format!(
                "<message to='bob@localhost/new' type='chat' id='o{i}'><body>{i}</body></message>"
            ))
            .await;
            if i % 10 == 9 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        a
    });
    // Bob binds without initial presence: what came before the bind waits offline,
    // everything after it arrives live on this stream
    let (mut b, _) = Raw::bound(d.starttls, D, "bob", "bob-pw", "new").await;
    let mut first: Option<usize> = None;
    let mut last: Option<usize> = None;
    while last != Some(N - 1) {
        let m = b.next_stanza().await;
        let Some(n) = m
            .split("id='o")
            .nth(1)
            .and_then(|r| r.split('\'').next())
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        assert!(
            last.is_none_or(|l| n > l),
            "message {n} arrived after {last:?}"
        );
        first.get_or_insert(n);
        last = Some(n);
    }
    // the bind fell inside Alice's stream: her first messages found no resource (they
    // wait offline), so the registry's path and the direct one were both crossed
    assert!(
        first.is_some_and(|f| f > 0),
        "Bob bound before Alice's first message: the race was not exercised"
    );
    sender.await.expect("sender");
    busy.await.expect("busy");
}

//! Trusted components (XEP-0114) against the real daemon, with raw sockets where the
//! protocol matters: the handshake, routing both ways between a component and local
//! users, detaching and reattaching, duplicate connections, bounds, reload, disco#items.
//! Real components (slixmpp's `ComponentXMPP`, the biboumi IRC gateway) are in
//! `components_gateways.rs`.

mod common;
use common::*;
use sha1::{Digest, Sha1};
use std::time::Duration;

const COMPONENTS: &str = "[[components]]\nname = \"irc.localhost\"\nsecret = \"s3cret-irc\"\n\
    description = \"IRC gateway\"\n\n\
    [[components]]\nname = \"gw.localhost\"\nsecret = \"gw-secret\"\nreplace = true\n";

fn daemon() -> Daemon {
    Daemon::with(Options {
        extra: COMPONENTS.into(),
        ..Options::default()
    })
}

fn digest(id: &str, secret: &str) -> String {
    Sha1::digest(format!("{id}{secret}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Open a component stream to `name`; returns the server's header.
async fn open(c: &mut Raw, name: &str) -> String {
    c.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{name}'>"
    ))
    .await;
    c.read_until(">").await;
    c.read_until(">").await
}

fn stream_id(header: &str) -> String {
    let start = header.find(" id='").expect("stream id") + 5;
    let end = header[start..].find('\'').expect("id end") + start;
    header[start..end].to_string()
}

/// A component connected and attached (handshake accepted).
async fn attach(d: &Daemon, name: &str, secret: &str) -> Raw {
    let c = Raw::connect(d.starttls, name).await;
    handshake(c, name, secret).await
}

/// The handshake on a connection: attached.
async fn handshake(mut c: Raw, name: &str, secret: &str) -> Raw {
    let header = open(&mut c, name).await;
    assert!(header.contains(&format!("from='{name}'")), "{header}");
    assert!(!header.contains("version="), "{header}");
    let id = stream_id(&header);
    c.send(&format!("<handshake>{}</handshake>", digest(&id, secret)))
        .await;
    let ok = c.next_stanza().await;
    assert_eq!(ok, "<handshake/>");
    c
}

async fn alice(d: &Daemon) -> (Raw, String) {
    Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await
}

fn has_error(stanza: &str, cond: &str) -> bool {
    stanza.contains("type='error'") && stanza.contains(&format!("<{cond} "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_unknown_name_wrong_secret_and_nothing_before_it() {
    let d = daemon();
    // a name that is not configured: host-unknown
    let mut c = Raw::connect(d.starttls, "nope.localhost").await;
    open(&mut c, "nope.localhost").await;
    let rest = c.read_to_close().await;
    assert!(rest.contains("<host-unknown "), "{rest}");
    // a hosted domain is no component either
    let mut c = Raw::connect(d.starttls, "localhost").await;
    open(&mut c, "localhost").await;
    let rest = c.read_to_close().await;
    assert!(rest.contains("<host-unknown "), "{rest}");
    // a wrong secret: not-authorized, and the domain stays unattached
    let mut c = Raw::connect(d.starttls, "irc.localhost").await;
    let id = stream_id(&open(&mut c, "irc.localhost").await);
    c.send(&format!("<handshake>{}</handshake>", digest(&id, "wrong")))
        .await;
    let rest = c.read_to_close().await;
    assert!(rest.contains("<not-authorized "), "{rest}");
    // the right secret for another stream id (a replayed handshake): not-authorized
    let mut c = Raw::connect(d.starttls, "irc.localhost").await;
    open(&mut c, "irc.localhost").await;
    c.send(&format!(
        "<handshake>{}</handshake>",
        digest(&id, "s3cret-irc")
    ))
    .await;
    let rest = c.read_to_close().await;
    assert!(rest.contains("<not-authorized "), "{rest}");
    // a stanza before the handshake: not-authorized, nothing routed
    let (mut a, _) = alice(&d).await;
    let mut c = Raw::connect(d.starttls, "irc.localhost").await;
    open(&mut c, "irc.localhost").await;
    c.send("<message from='x@irc.localhost' to='alice@localhost'><body>early</body></message>")
        .await;
    let rest = c.read_to_close().await;
    assert!(rest.contains("<not-authorized "), "{rest}");
    a.send("<message to='someone@irc.localhost' id='m1'><body>hi</body></message>")
        .await;
    let r = a.next_non_presence().await;
    assert!(has_error(&r, "service-unavailable"), "{r}");
    assert!(!r.contains("early"), "{r}");
    // the right one works
    let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
    a.send("<message to='someone@irc.localhost' id='m2'><body>hi</body></message>")
        .await;
    let m = c.next_stanza().await;
    assert!(m.contains("to='someone@irc.localhost'"), "{m}");
    assert!(m.contains("from='alice@localhost/r'"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_over_direct_tls() {
    let d = daemon();
    // the component checks the server's certificate (for its domain, localhost)
    let c = Raw::connect_tls(d.direct_tls, "localhost").await;
    let mut c = handshake(c, "irc.localhost", "s3cret-irc").await;
    let (mut a, _) = alice(&d).await;
    a.send("<message to='x@irc.localhost' id='t1'><body>over tls</body></message>")
        .await;
    let m = c.next_stanza().await;
    assert!(m.contains("id='t1'") && m.contains("over tls"), "{m}");
}

/// A handshake with `secret` on a new connection; what the server sent until it closed
/// (or `<handshake/>` when accepted: then the connection is dropped).
async fn try_handshake(d: &Daemon, name: &str, secret: &str) -> String {
    let mut c = Raw::connect(d.starttls, name).await;
    let id = stream_id(&open(&mut c, name).await);
    c.send(&format!("<handshake>{}</handshake>", digest(&id, secret)))
        .await;
    let first = c.next_stanza().await;
    if first == "<handshake/>" {
        return first;
    }
    first + &c.read_to_close().await
}

/// A client login with a wrong password from loopback.
async fn wrong_login(d: &Daemon) -> String {
    let mut c = Raw::connect(d.starttls, "localhost").await;
    c.starttls().await;
    c.auth_plain("alice", "wrong").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secrets_are_throttled_per_component_apart_from_clients() {
    let d = Daemon::with(Options {
        extra: format!(
            "{COMPONENTS}\n[limits]\nauth_failures_per_ip = 2\nauth_failures_per_account = 2\n"
        ),
        ..Options::default()
    });
    for _ in 0..2 {
        let rest = try_handshake(&d, "irc.localhost", "guess-guess").await;
        assert!(rest.contains("<not-authorized "), "{rest}");
    }
    // now even the right secret is refused for this component for the window
    let rest = try_handshake(&d, "irc.localhost", "s3cret-irc").await;
    assert!(rest.contains("<policy-violation "), "{rest}");
    assert!(!rest.contains("<handshake/>"), "{rest}");
    // but not for another component, nor for clients on the same (loopback) address
    assert_eq!(
        try_handshake(&d, "gw.localhost", "gw-secret").await,
        "<handshake/>"
    );
    let (_a, _) = alice(&d).await;
    // and the other way round: clients failing from loopback lock out their address,
    // not the components beside the server
    for _ in 0..2 {
        let r = wrong_login(&d).await;
        assert!(r.contains("<not-authorized/>"), "{r}");
    }
    let r = wrong_login(&d).await;
    assert!(r.contains("<temporary-auth-failure/>"), "{r}");
    assert_eq!(
        try_handshake(&d, "gw.localhost", "gw-secret").await,
        "<handshake/>"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_and_secrets_change_on_reload() {
    let d = Daemon::start();
    let mut c = Raw::connect(d.starttls, "irc.localhost").await;
    open(&mut c, "irc.localhost").await;
    let rest = c.read_to_close().await;
    assert!(rest.contains("<host-unknown "), "{rest}");
    // check-config refuses a component named like a hosted domain, and a short secret
    let cfg = std::fs::read_to_string(&d.config).expect("read");
    std::fs::write(
        &d.config,
        format!("{cfg}\n[[components]]\nname = \"localhost\"\nsecret = \"x\"\n"),
    )
    .expect("write");
    let out = d.cli(&["check-config"]);
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(err.contains("is a hosted domain"), "{err}");
    assert!(err.contains("at least 8 characters"), "{err}");
    // added while running: new connections see it after the reload
    std::fs::write(&d.config, format!("{cfg}\n{COMPONENTS}")).expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", 1);
    let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
    let (mut a, _) = alice(&d).await;
    a.send("<message to='x@irc.localhost' id='before'><body>1</body></message>")
        .await;
    assert!(c.next_stanza().await.contains("id='before'"));
    // a new secret: the connected component, which proved the old one, is closed;
    // new connections need the new one
    std::fs::write(
        &d.config,
        format!("{cfg}\n{}", COMPONENTS.replace("s3cret-irc", "n3w-s3cret")),
    )
    .expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", 2);
    let rest = c.read_to_close().await;
    assert!(rest.contains("<not-authorized "), "{rest}");
    d.wait_log("component dismissed by a reload", 1);
    a.send("<message to='x@irc.localhost' id='between'><body>2</body></message>")
        .await;
    let r = a.wait_for("id='between'").await;
    assert!(has_error(&r, "service-unavailable"), "{r}");
    let rest = try_handshake(&d, "irc.localhost", "s3cret-irc").await;
    assert!(rest.contains("<not-authorized "), "{rest}");
    let mut c = attach(&d, "irc.localhost", "n3w-s3cret").await;
    a.send("<message to='x@irc.localhost' id='after'><body>3</body></message>")
        .await;
    assert!(c.next_stanza().await.contains("id='after'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_removes_a_component_or_hosts_its_domain_closes_it() {
    let d = daemon();
    let cfg = std::fs::read_to_string(&d.config).expect("read");
    assert!(cfg.contains(COMPONENTS));
    let mut irc = attach(&d, "irc.localhost", "s3cret-irc").await;
    let mut gw = attach(&d, "gw.localhost", "gw-secret").await;
    let (mut a, _) = alice(&d).await;
    // irc.localhost's entry goes; gw.localhost becomes a hosted domain
    std::fs::write(
        &d.config,
        cfg.replace(COMPONENTS, "[[domain]]\nname = \"gw.localhost\"\n"),
    )
    .expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", 1);
    for c in [&mut irc, &mut gw] {
        let rest = c.read_to_close().await;
        assert!(rest.contains("<host-gone "), "{rest}");
    }
    d.wait_log("component dismissed by a reload", 2);
    // neither is served by the old connections any more: irc.localhost is an unknown
    // remote domain, gw.localhost is hosted (and has no user x)
    a.send("<message to='x@irc.localhost' id='r1'><body>1</body></message>")
        .await;
    let r = a.wait_for("id='r1'").await;
    assert!(has_error(&r, "remote-server-not-found"), "{r}");
    let rest = try_handshake(&d, "gw.localhost", "gw-secret").await;
    assert!(rest.contains("<host-unknown "), "{rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_iq_and_presence_both_ways() {
    let d = daemon();
    let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
    let (mut a, jid) = alice(&d).await;

    // user → component: written without a namespace declaration (the component's own)
    a.send("<message to='bob@irc.localhost' type='chat' id='m1'><body>hello irc</body></message>")
        .await;
    let m = c.next_stanza().await;
    assert!(m.starts_with("<message "), "{m}");
    assert!(!m.contains("jabber:client"), "{m}");
    assert!(m.contains(&format!("from='{jid}'")), "{m}");
    assert!(m.contains("<body>hello irc</body>"), "{m}");

    // component → user
    c.send(&format!(
        "<message from='bob@irc.localhost/irc' to='{jid}' type='chat' id='c1'><body>hello xmpp</body></message>"
    ))
    .await;
    let m = a.next_non_presence().await;
    assert!(m.contains("from='bob@irc.localhost/irc'"), "{m}");
    assert!(m.contains("<body>hello xmpp</body>"), "{m}");

    // iq from the user, answered by the component
    a.send("<iq to='irc.localhost' type='get' id='q1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let q = c.next_stanza().await;
    assert!(q.contains("id='q1'") && q.contains("type='get'"), "{q}");
    c.send(&format!(
        "<iq from='irc.localhost' to='{jid}' type='result' id='q1'><query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='gateway' type='irc' name='IRC'/></query></iq>"
    ))
    .await;
    let r = a.next_non_presence().await;
    assert!(r.contains("type='result'") && r.contains("id='q1'"), "{r}");
    assert!(r.contains("category='gateway'"), "{r}");

    // iq from the component to the user, and the user's result back
    c.send(&format!(
        "<iq from='bob@irc.localhost/irc' to='{jid}' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>"
    ))
    .await;
    let q = a.wait_for("id='v1'").await;
    assert!(q.contains("from='bob@irc.localhost/irc'"), "{q}");
    a.send("<iq to='bob@irc.localhost/irc' type='result' id='v1'><query xmlns='jabber:iq:version'><name>raw</name></query></iq>")
        .await;
    let r = c.next_stanza().await;
    assert!(
        r.contains("type='result'") && r.contains("<name>raw</name>"),
        "{r}"
    );
    assert!(r.contains(&format!("from='{jid}'")), "{r}");

    // registration with the gateway (XEP-0077) is the component's to answer
    a.send("<iq to='irc.localhost' type='get' id='reg'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    let q = c.next_stanza().await;
    assert!(
        q.contains("id='reg'") && q.contains("jabber:iq:register"),
        "{q}"
    );

    // iq from the component to the server: answered to the component
    c.send("<iq from='irc.localhost' to='localhost' type='get' id='s1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let r = c.next_stanza().await;
    assert!(r.contains("type='result'") && r.contains("id='s1'"), "{r}");
    assert!(r.contains("to='irc.localhost'"), "{r}");

    // a subscription to a gateway contact goes to the component...
    a.send("<iq type='get' id='ros'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    a.wait_for("id='ros'").await;
    a.send("<presence to='bob@irc.localhost' type='subscribe'/>")
        .await;
    let pending = a.wait_for("ask='subscribe'").await;
    assert!(pending.contains("jid='bob@irc.localhost'"), "{pending}");
    let s = c.wait_for("type='subscribe'").await;
    assert!(s.contains("from='alice@localhost'"), "{s}");
    // ...and its answer and presence come back: roster push, then the presence
    c.send("<presence from='bob@irc.localhost' to='alice@localhost' type='subscribed'/>")
        .await;
    c.send(
        "<presence from='bob@irc.localhost/irc' to='alice@localhost'><show>away</show></presence>",
    )
    .await;
    let push = a.wait_for("subscription='to'").await;
    assert!(push.contains("jabber:iq:roster"), "{push}");
    assert!(push.contains("jid='bob@irc.localhost'"), "{push}");
    let p = a.wait_for("from='bob@irc.localhost/irc'").await;
    assert!(p.contains("<show>away</show>"), "{p}");
    // the gateway contact subscribes back: approved, then the user's broadcasts reach it
    c.send("<presence from='bob@irc.localhost' to='alice@localhost' type='subscribe'/>")
        .await;
    let req = a.wait_for("type='subscribe'").await;
    assert!(req.contains("from='bob@irc.localhost'"), "{req}");
    a.send("<presence to='bob@irc.localhost' type='subscribed'/>")
        .await;
    let ok = c.wait_for("type='subscribed'").await;
    assert!(ok.contains("from='alice@localhost'"), "{ok}");
    let push = a.wait_for("subscription='both'").await;
    assert!(push.contains("jid='bob@irc.localhost'"), "{push}");
    // with the subscription the contact gets the user's current presence
    let now = c.wait_for(&format!("from='{jid}'")).await;
    assert!(
        now.starts_with("<presence") && !now.contains("type="),
        "{now}"
    );
    a.send("<presence><show>dnd</show></presence>").await;
    let p = c.wait_for("<show>dnd</show>").await;
    assert!(p.contains(&format!("from='{jid}'")), "{p}");
    assert!(p.contains("to='bob@irc.localhost'"), "{p}");
    // a second resource logging in probes the gateway contact
    let (_a2, jid2) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r2").await;
    let probe = c.wait_for("type='probe'").await;
    assert!(probe.contains("to='bob@irc.localhost'"), "{probe}");
    assert!(probe.contains("from='alice@localhost"), "{probe}");
    let p = c.wait_for(&format!("from='{jid2}'")).await;
    assert!(p.starts_with("<presence"), "{p}");

    // directed presence to a gateway contact reaches the component
    a.send("<presence to='bob@irc.localhost' type='unavailable'/>")
        .await;
    let u = c.wait_for("type='unavailable'").await;
    assert!(u.contains(&format!("from='{jid}'")), "{u}");

    // a malformed 'to' is the component's stanza error
    c.send("<message from='bob@irc.localhost' to='a@@b' id='bad'><body>x</body></message>")
        .await;
    let e = c.wait_for("id='bad'").await;
    assert!(
        has_error(&e, "jid-malformed") && e.contains("id='bad'"),
        "{e}"
    );

    // 'from' outside its domain ends the component's stream: invalid-from
    c.send("<message from='bob@localhost' to='alice@localhost'><body>spoof</body></message>")
        .await;
    let rest = c.read_to_close().await;
    assert!(rest.contains("<invalid-from "), "{rest}");
    a.expect_only_presence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_component_gives_service_unavailable_and_reattaches_at_once() {
    let d = daemon();
    let (mut a, _) = alice(&d).await;
    // configured, never connected
    a.send("<message to='x@irc.localhost' id='n1'><body>1</body></message>")
        .await;
    let r = a.next_non_presence().await;
    assert!(
        has_error(&r, "service-unavailable") && r.contains("id='n1'"),
        "{r}"
    );
    // a domain that is no component at all: no federation yet
    a.send("<message to='x@elsewhere.example' id='n2'><body>1</body></message>")
        .await;
    let r = a.next_non_presence().await;
    assert!(has_error(&r, "remote-server-not-found"), "{r}");

    for round in 0..3 {
        let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
        let id = format!("r{round}");
        a.send(&format!(
            "<message to='x@irc.localhost' id='{id}'><body>round</body></message>"
        ))
        .await;
        let m = c.next_stanza().await;
        assert!(m.contains(&format!("id='{id}'")), "{m}");
        // the component goes away (closing its stream)
        c.send("</stream:stream>").await;
        c.read_to_close().await;
        d.wait_log("component detached", round + 1);
        a.send(&format!(
            "<message to='x@irc.localhost' id='{id}-gone'><body>gone</body></message>"
        ))
        .await;
        let r = a.next_non_presence().await;
        assert!(
            has_error(&r, "service-unavailable") && r.contains(&format!("id='{id}-gone'")),
            "{r}"
        );
        // an iq too
        a.send("<iq to='irc.localhost' type='get' id='gone-iq'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        let r = a.next_non_presence().await;
        assert!(has_error(&r, "service-unavailable"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_is_refused_or_replaces_the_first() {
    let d = daemon();
    let (mut a, _) = alice(&d).await;
    // replace = false (the default): the second gets conflict, the first keeps serving
    let mut first = attach(&d, "irc.localhost", "s3cret-irc").await;
    let mut second = Raw::connect(d.starttls, "irc.localhost").await;
    let id = stream_id(&open(&mut second, "irc.localhost").await);
    second
        .send(&format!(
            "<handshake>{}</handshake>",
            digest(&id, "s3cret-irc")
        ))
        .await;
    let rest = second.read_to_close().await;
    assert!(rest.contains("<conflict "), "{rest}");
    a.send("<message to='x@irc.localhost' id='k1'><body>still</body></message>")
        .await;
    let m = first.next_stanza().await;
    assert!(m.contains("id='k1'"), "{m}");

    // replace = true: the second takes over, the first is closed with conflict
    let mut old = attach(&d, "gw.localhost", "gw-secret").await;
    let mut new = attach(&d, "gw.localhost", "gw-secret").await;
    let rest = old.read_to_close().await;
    assert!(rest.contains("<conflict "), "{rest}");
    a.send("<message to='x@gw.localhost' id='k2'><body>new one</body></message>")
        .await;
    let m = new.next_stanza().await;
    assert!(m.contains("id='k2'"), "{m}");
    // the replaced one's end did not detach its successor
    d.wait_log("component disconnected", 1);
    a.send("<message to='x@gw.localhost' id='k3'><body>again</body></message>")
        .await;
    let m = new.next_stanza().await;
    assert!(m.contains("id='k3'"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_flight_across_a_replace_reach_the_new_connection() {
    let d = daemon();
    let (mut a, _) = alice(&d).await;
    let old = attach(&d, "gw.localhost", "gw-secret").await;
    // a stream of messages, and a new connection taking over in the middle of it
    let n = 400;
    let sender = tokio::spawn(async move {
        for i in 0..n {
            a.send(&format!(
                "<message to='x@gw.localhost' id='m{i}'><body>{i}</body></message>"
            ))
            .await;
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        a
    });
    let mut new = attach(&d, "gw.localhost", "gw-secret").await;
    let mut a = sender.await.expect("sender");
    let mut old = old;
    let before = old.read_to_close().await;
    assert!(before.contains("<conflict "), "{before}");
    // every message reached one of the two connections, and none came back to alice
    let last = format!("id='m{}'", n - 1);
    let mut after = String::new();
    if !before.contains(&last) {
        after = new.read_until(&last).await;
    }
    for i in 0..n {
        let id = format!("id='m{i}'");
        assert!(
            before.contains(&id) || after.contains(&id),
            "m{i} lost across the replace"
        );
    }
    a.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_does_not_read_is_dropped_and_senders_are_told() {
    let d = Daemon::with(Options {
        extra: format!("{COMPONENTS}\n[limits]\nread_rate = 0\nwrite_buffer = 262144\n"),
        ..Options::default()
    });
    let (mut a, _) = alice(&d).await;
    // attached, then never reads again
    let _c = attach(&d, "irc.localhost", "s3cret-irc").await;
    // small messages, and alice reads often: the bounces carry the body back, and alice
    // too is dropped if she leaves more than the write buffer unread
    let body = "x".repeat(2 * 1024);
    let mut refused = None;
    for i in 0..20_000 {
        a.send(&format!(
            "<message to='x@irc.localhost' id='f{i}'><body>{body}</body></message>"
        ))
        .await;
        if i % 16 == 15
            && let Some(r) = a
                .try_read_until("</message>", Duration::from_millis(5))
                .await
        {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("the queue for the component never filled");
    assert!(has_error(&r, "resource-constraint"), "{r}");
    d.wait_log("component not reading", 1);
    d.wait_log("component detached", 1);
    // the component's domain is free again
    let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
    a.send("<message to='x@irc.localhost' id='after'><body>back</body></message>")
        .await;
    let m = c.wait_for("id='after'").await;
    assert!(m.contains("<body>back</body>"), "{m}");
}

async fn items(a: &mut Raw, id: &str) -> String {
    a.send(&format!(
        "<iq to='localhost' type='get' id='{id}'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
    ))
    .await;
    a.wait_for(&format!("id='{id}'")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disco_items_list_the_attached_components() {
    // two hosted domains: each lists the components that are its subdomains
    let d = Daemon::with(Options {
        extra: format!("{COMPONENTS}\n[[domain]]\nname = \"other.localhost\"\n"),
        ..Options::default()
    });
    let (mut a, _) = alice(&d).await;
    let r = items(&mut a, "d1").await;
    // before any component attaches: only the chat-room service
    assert!(
        r.contains("type='result'") && !r.contains(".localhost'/><item") && !r.contains("irc."),
        "{r}"
    );
    let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
    let g = attach(&d, "gw.localhost", "gw-secret").await;
    let r = items(&mut a, "d2").await;
    assert!(
        r.contains("<item jid='gw.localhost'/><item jid='irc.localhost' name='IRC gateway'/>"),
        "{r}"
    );
    // the other hosted domain, asked through the registry: the components are no
    // subdomains of it, so it lists none
    a.send("<iq to='other.localhost' type='get' id='o1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    let r = a.wait_for("id='o1'").await;
    assert!(
        r.contains("type='result'") && !r.contains("irc.localhost") && !r.contains("gw.localhost"),
        "{r}"
    );
    // the same answer for anyone asking, through the registry: the component itself
    c.send("<iq from='irc.localhost' to='localhost' type='get' id='d3'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await;
    let r = c.next_stanza().await;
    assert!(
        r.contains("jid='irc.localhost'") && r.contains("jid='gw.localhost'"),
        "{r}"
    );
    drop(g);
    d.wait_log("component detached", 1);
    let r = items(&mut a, "d4").await;
    assert!(
        r.contains("jid='irc.localhost'") && !r.contains("jid='gw.localhost'"),
        "{r}"
    );
}

/// GET `path` from the daemon's HTTP side; the body.
async fn http_get(d: &Daemon, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = d.dir.path().join("data").join("admin.addr");
    let addr: std::net::SocketAddr = std::fs::read_to_string(&f)
        .expect("admin.addr")
        .trim()
        .parse()
        .expect("HTTP address");
    // /monitor* needs the token the daemon writes beside its data (/metrics ignores it)
    let token =
        std::fs::read_to_string(d.dir.path().join("data").join("http.token")).expect("http.token");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            token.trim()
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("read timeout")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, b)| b.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_shows_on_the_monitor_and_in_the_metrics() {
    let d = daemon();
    let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
    let (mut a, _) = alice(&d).await;
    a.send("<message to='x@irc.localhost' id='mon'><body>1</body></message>")
        .await;
    assert!(c.next_stanza().await.contains("id='mon'"));
    let v: serde_json::Value =
        serde_json::from_str(&http_get(&d, "/monitor.json").await).expect("JSON");
    let rows = v["connections"].as_array().cloned().expect("rows");
    let row = rows
        .iter()
        .find(|r| r["identity"] == "irc.localhost")
        .unwrap_or_else(|| panic!("no component row: {rows:?}"));
    assert_eq!(row["kind"], "component", "{row}");
    assert!(row["stanzas_out"].as_u64() >= Some(1), "{row}");
    let metrics = http_get(&d, "/metrics").await;
    assert!(
        metrics.contains("xmppd_actors{kind=\"component\"} 1"),
        "{metrics}"
    );
    drop(c);
    d.wait_log("component detached", 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_iqs_are_refused_and_errors_never_answered() {
    let d = daemon();
    let mut c = attach(&d, "irc.localhost", "s3cret-irc").await;
    let (mut a, _) = alice(&d).await;
    // an iq get without a payload, one without id: bad-request from the server
    c.send("<iq from='irc.localhost' to='alice@localhost/r' type='get' id='b1'/>")
        .await;
    let r = c.next_stanza().await;
    assert!(has_error(&r, "bad-request"), "{r}");
    assert!(
        r.contains("from='localhost'") && r.contains("to='irc.localhost'"),
        "{r}"
    );
    c.send("<iq from='irc.localhost' to='alice@localhost/r' type='set'><query xmlns='jabber:iq:version'/></iq>")
        .await;
    let r = c.next_stanza().await;
    assert!(has_error(&r, "bad-request"), "{r}");
    // an error and an iq result to a malformed address: dropped, never answered
    c.send("<message from='u@irc.localhost' to='a@@b' type='error' id='e1'/>")
        .await;
    c.send("<iq from='u@irc.localhost' to='a@@b' type='result' id='e2'/>")
        .await;
    c.expect_silence(Duration::from_millis(300)).await;
    // nothing reached alice, and the component still serves
    a.expect_silence(Duration::from_millis(100)).await;
    a.send("<message to='x@irc.localhost' id='ok'><body>1</body></message>")
        .await;
    assert!(c.next_stanza().await.contains("id='ok'"));
}

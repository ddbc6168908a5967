//! The WebAdmin against the real daemon over real sockets: who is refused (no login, a
//! wrong password, an account that is no administrator, a missing or wrong CSRF token,
//! a foreign Host or Origin, throttled logins), each settings change taking effect at
//! once in the running server and surviving a restart (the overlay file), accounts
//! created, reset and deleted (the XEP-0077 removal path), and the JSON API with the
//! token.

mod common;
use common::register::{login_works, register};
use common::web::*;
use common::*;
use serde_json::json;

const ADMIN: &str = "boss@localhost";
const ADMIN_PW: &str = "boss-pw";

fn with_admin(extra: &str) -> Options {
    let mut o = Options {
        top: format!("admins = [\"{ADMIN}\"]"),
        extra: extra.to_string(),
        ..Options::default()
    };
    o.accounts.push(("boss".into(), ADMIN_PW.into()));
    o
}

async fn logged_in(d: &Daemon) -> Web {
    let mut w = Web::of(d);
    let a = w.login(ADMIN, ADMIN_PW).await;
    assert_eq!(a.status, 303, "{a:?}");
    w
}

/// The live settings, read with the token.
async fn settings(w: &Web) -> serde_json::Value {
    let a = w.api("GET", "/api/settings", &json!({})).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()
}

async fn disco_items(r: &mut Raw, id: &str) -> String {
    r.send(&format!(
        "<iq type='get' id='{id}' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>"
    ))
    .await;
    r.wait_for(&format!("id='{id}'")).await
}

/// A raw XEP-0114 handshake as component `name` with `secret`: the server's first answer.
async fn component_handshake(d: &Daemon, name: &str, secret: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut c = Raw::connect(d.starttls, name).await;
    c.send(&format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{name}'>"
    ))
    .await;
    c.read_until(">").await;
    let header = c.read_until(">").await;
    let start = header.find(" id='").expect("stream id") + 5;
    let end = header[start..].find('\'').expect("id end") + start;
    let digest: String = Sha1::digest(format!("{}{secret}", &header[start..end]).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    c.send(&format!("<handshake>{digest}</handshake>")).await;
    c.next_stanza().await
}

#[tokio::test]
async fn strangers_wrong_passwords_and_forged_requests_are_refused() {
    let d = Daemon::with(with_admin("[limits]\nauth_failures_per_account = 3\n"));
    let mut w = Web::of(&d);
    // no login: pages send the browser to the login form, the rest is 401
    let a = w.get("/admin/settings").await;
    assert_eq!(
        (a.status, a.header("location").as_deref()),
        (303, Some("/admin/login"))
    );
    assert_eq!(w.get("/api/settings").await.status, 401);
    assert_eq!(w.get("/monitor.json").await.status, 401);
    let a = w
        .post_form(
            "/admin/domains",
            &[
                ("action", "domain_flags"),
                ("domain", "localhost"),
                ("auto_signup", "true"),
            ],
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(w.get("/admin/login").await.status, 200);

    // a wrong password, and the right password of an account that is no administrator
    let a = w.login(ADMIN, "nope").await;
    assert_eq!(a.status, 403);
    assert!(a.header("set-cookie").is_none() && w.cookie.is_none());
    let a = w.login("alice@localhost", "alice-pw").await;
    assert_eq!(a.status, 403);
    assert!(w.cookie.is_none());
    let a = w.login("nobody@localhost", "x").await;
    assert_eq!(a.status, 403);

    let a = w.login(ADMIN, ADMIN_PW).await;
    assert_eq!(a.status, 303, "{a:?}");
    // counted like XMPP logins: three failures (above), one success
    let m = w.request("GET", "/metrics", &[], "").await.body;
    for (result, n) in [("failure", 3), ("success", 1)] {
        let line = format!(
            "xmppd_authentications_total{{mechanism=\"webadmin\",result=\"{result}\"}} {n}"
        );
        assert!(m.contains(&line), "{line} not in\n{m}");
    }
    let cookie = a.header("set-cookie").expect("cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let page = w.get("/admin/settings").await;
    assert!(
        page.body.contains("Log Level") && page.body.contains(ADMIN),
        "{}",
        page.body
    );

    // a change without the CSRF token, or with another one, changes nothing
    let flags = [
        ("action", "domain_flags"),
        ("domain", "localhost"),
        ("auto_signup", "true"),
    ];
    assert_eq!(w.post_form("/admin/domains", &flags).await.status, 403);
    let mut forged = flags.to_vec();
    forged.push(("csrf", "0123456789abcdef0123456789abcdef0123456789abcdef"));
    assert_eq!(w.post_form("/admin/domains", &forged).await.status, 403);
    // the process's token is not a session's CSRF token either
    let token = w.token.clone();
    let mut with_file_token = flags.to_vec();
    with_file_token.push(("csrf", &token));
    assert_eq!(
        w.post_form("/admin/domains", &with_file_token).await.status,
        403
    );
    // another site's page posting with the right token, and a foreign Host
    let ct = ("Content-Type", "application/x-www-form-urlencoded");
    let mut good = flags.to_vec();
    good.push(("csrf", w.csrf.as_str()));
    let body = form(&good);
    let a = w
        .request(
            "POST",
            "/admin/domains",
            &[ct, ("Origin", "https://evil.example")],
            &body,
        )
        .await;
    assert_eq!(a.status, 403);
    let mut evil = Web::of(&d);
    evil.cookie = w.cookie.clone();
    evil.host = "evil.example".into();
    assert_eq!(evil.get("/admin/settings").await.status, 403);
    assert_eq!(
        evil.request("POST", "/admin/domains", &[ct], &body)
            .await
            .status,
        403
    );
    assert_eq!(settings(&w).await["domain"][0]["auto_signup"], false);
    assert!(register(&d, "sneaky", "pw").await != "result");
    // and with everything right, it is taken
    assert_eq!(
        w.request("POST", "/admin/domains", &[ct], &body)
            .await
            .status,
        200
    );
    assert_eq!(settings(&w).await["domain"][0]["auto_signup"], true);

    // the JSON API with the session: the CSRF token in X-CSRF-Token, else 403
    let json_ct = ("Content-Type", "application/json");
    let change = json!({"action": "channels", "channels": 999}).to_string();
    let a = w
        .request("POST", "/api/settings", &[json_ct], &change)
        .await;
    assert_eq!(a.status, 403);
    let csrf = w.csrf.clone();
    let a = w
        .request(
            "POST",
            "/api/settings",
            &[json_ct, ("X-CSRF-Token", &csrf)],
            &change,
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["ok"], true);
    assert_eq!(settings(&w).await["channels"], 999);

    // logout ends the session
    let csrf = w.csrf.clone();
    let a = w.post_form("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(a.status, 303);
    assert_eq!(w.get("/admin/settings").await.status, 303);
    assert_eq!(w.get("/api/settings").await.status, 401);
    assert_eq!(
        settings(&w).await["domain"][0]["auto_signup"],
        true,
        "the token still works"
    );

    // failed logins are throttled like XMPP ones: after 3 for the account, even the
    // right password is refused for a while — and an XMPP login too
    let mut t = Web::of(&d);
    for _ in 0..3 {
        assert_eq!(t.login(ADMIN, "guess").await.status, 403);
    }
    let a = t.login(ADMIN, ADMIN_PW).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert!(t.cookie.is_none());
    assert!(!login_works(&d, "boss", ADMIN_PW).await);
}

#[tokio::test]
async fn each_change_applies_at_once_and_survives_a_restart() {
    let mut d = Daemon::with(with_admin(""));
    let w = logged_in(&d).await;

    // Auto Signup on: a raw XEP-0077 registration succeeds; off: refused
    assert_ne!(register(&d, "early", "pw").await, "result");
    let on = [
        ("action", "domain_flags"),
        ("domain", "localhost"),
        ("auto_signup", "true"),
        ("allow_modify_password", "true"),
    ];
    let a = w.submit("/admin/domains", &on).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("Applied."), "{}", a.body);
    assert_eq!(register(&d, "newbie", "newbie-pw").await, "result");
    assert!(login_works(&d, "newbie", "newbie-pw").await);
    let off = [
        ("action", "domain_flags"),
        ("domain", "localhost"),
        ("auto_signup", "false"),
        ("allow_modify_password", "true"),
    ];
    assert_eq!(w.submit("/admin/domains", &off).await.status, 200);
    assert_ne!(register(&d, "late", "pw").await, "result");
    // the API: a field left out stays as it is; a misspelt one is refused
    let script = Web::of(&d);
    let a = script
        .api(
            "POST",
            "/api/settings",
            &json!({"action": "domain_flags", "domain": "localhost", "auto_signup": false}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        settings(&script).await["domain"][0]["allow_modify_password"],
        true
    );
    let a = script
        .api(
            "POST",
            "/api/settings",
            &json!({"action": "domain_flags", "domain": "localhost", "autosignup": true}),
        )
        .await;
    assert!(
        a.status == 400 && a.body.contains("autosignup"),
        "{}",
        a.body
    );

    // a supplementary disco item appears in disco#items of a session opened before
    let (mut alice, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await;
    assert!(
        !disco_items(&mut alice, "i1")
            .await
            .contains("irc.example.net")
    );
    let add = [
        ("action", "add_disco_item"),
        ("domain", "localhost"),
        ("jid", "irc.example.net"),
        ("name", "IRC gateway"),
    ];
    assert_eq!(w.submit("/admin/domains", &add).await.status, 200);
    let items = disco_items(&mut alice, "i2").await;
    assert!(
        items.contains("jid='irc.example.net'") && items.contains("name='IRC gateway'"),
        "{items}"
    );

    // the log level of inbound connections: their XML shows in the log at once
    alice
        .send("<iq type='get' id='quiet-ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.wait_for("id='quiet-ping'").await;
    assert!(!d.log().contains("quiet-ping"));
    let level = [
        ("action", "log_level"),
        ("level", "problems"),
        ("xmppi", "all"),
        ("xmppo", ""),
    ];
    assert_eq!(w.submit("/admin/settings", &level).await.status, 200);
    alice
        .send("<iq type='get' id='loud-ping'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    alice.wait_for("id='loud-ping'").await;
    d.wait_log("loud-ping", 1);

    // a hosted domain added, an account created for it: it logs in
    let a = w
        .submit(
            "/admin/domains",
            &[("action", "add_domain"), ("domain", "a.test")],
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = w
        .submit(
            "/admin/accounts",
            &[
                ("action", "create"),
                ("jid", "carol@a.test"),
                ("password", "carol-pw"),
            ],
        )
        .await;
    assert!(a.body.contains("carol@a.test created"), "{}", a.body);
    Raw::login(d.starttls, "a.test", "carol", "carol-pw", "r").await;

    // a limit: the sessions one account may bind
    let limit = [("action", "limits"), ("max_sessions_per_account", "1")];
    assert_eq!(w.submit("/admin/settings", &limit).await.status, 200);
    let mut second = Raw::connect(d.starttls, "localhost").await;
    second.starttls().await;
    assert!(
        second
            .auth_scram("SCRAM-SHA-256", "alice", "alice-pw")
            .await
            .starts_with("<success")
    );
    second.open().await;
    second
        .send("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
        .await;
    let bound = second.wait_for("id='b'").await;
    assert!(bound.contains("type='error'"), "a second session: {bound}");

    // what check-config refuses is refused here, and nothing is written
    let overlay = d.dir.path().join("data").join("settings.toml");
    let before = std::fs::read_to_string(&overlay).expect("overlay written");
    let short = [
        ("action", "add_component"),
        ("name", "gw.localhost.test"),
        ("secret", "short"),
    ];
    let a = w.submit("/admin/federation", &short).await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("at least 8"), "{}", a.body);
    let bad = [("action", "limits"), ("max_stanza_size", "100")];
    let a = w.submit("/admin/settings", &bad).await;
    assert!(
        a.status == 400 && a.body.contains("at least 10000"),
        "{}",
        a.body
    );
    assert_eq!(std::fs::read_to_string(&overlay).expect("overlay"), before);
    assert_eq!(settings(&w).await["limits"]["max_stanza_size"], 262144);

    // federation settings are saved and live
    let secure = [
        ("action", "secure_domains"),
        ("domains", "*.bank.test\nsafe.test"),
    ];
    assert_eq!(w.submit("/admin/federation", &secure).await.status, 200);
    let route = [
        ("action", "add_route"),
        ("domain", "far.test"),
        ("host", "127.0.0.1"),
        ("port", "5999"),
    ];
    assert_eq!(w.submit("/admin/federation", &route).await.status, 200);
    let comp = [
        ("action", "add_component"),
        ("name", "gw.test"),
        ("secret", "long-enough-secret"),
    ];
    assert_eq!(w.submit("/admin/federation", &comp).await.status, 200);
    let s = settings(&w).await;
    assert_eq!(
        s["s2s"]["secure_domains"],
        json!(["*.bank.test", "safe.test"])
    );
    assert_eq!(s["routes"][0]["port"], 5999);
    assert_eq!(s["components"][0]["name"], "gw.test");
    assert_eq!(s["components"][0]["secret"], "***", "secrets are not shown");
    // the component added here attaches with its secret (XEP-0114), and not with another
    assert_eq!(
        component_handshake(&d, "gw.test", "long-enough-secret").await,
        "<handshake/>"
    );
    assert_ne!(
        component_handshake(&d, "gw.test", "another-secret!").await,
        "<handshake/>"
    );

    // a restart reads the file, then the overlay: everything is still in force
    drop(alice);
    d.terminate();
    d.spawn();
    let (mut alice, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await;
    assert!(
        disco_items(&mut alice, "i3")
            .await
            .contains("jid='irc.example.net'")
    );
    Raw::login(d.starttls, "a.test", "carol", "carol-pw", "r").await;
    assert_ne!(register(&d, "after-restart", "pw").await, "result");
    let w = Web::of(&d);
    let s = settings(&w).await;
    assert_eq!(s["log_tags"]["XMPPI"], "all");
    assert_eq!(s["limits"]["max_sessions_per_account"], 1);
    assert_eq!(s["components"][0]["name"], "gw.test");
    assert_eq!(s["routes"][0]["domain"], "far.test");
    // removing the item is saved too
    let w = logged_in(&d).await;
    let rm = [
        ("action", "remove_disco_item"),
        ("domain", "localhost"),
        ("jid", "irc.example.net"),
        ("node", ""),
    ];
    assert_eq!(w.submit("/admin/domains", &rm).await.status, 200);
    assert!(
        !disco_items(&mut alice, "i4")
            .await
            .contains("irc.example.net")
    );
    // and a domain removed is not served any more (from the page: "sure" ticked)
    let rm = [
        ("action", "remove_domain"),
        ("domain", "a.test"),
        ("confirm", "yes"),
    ];
    let a = w.submit("/admin/domains", &rm).await;
    assert!(a.body.contains("removed [a.test]"), "{}", a.body);
    let mut gone = Raw::connect(d.starttls, "a.test").await;
    let h = gone.header();
    gone.send(&h).await;
    let refused = gone.read_to_close().await;
    assert!(refused.contains("host-unknown"), "{refused}");
}

#[tokio::test]
async fn accounts_are_listed_reset_and_deleted_like_an_inband_removal() {
    let d = Daemon::with(with_admin(""));
    let w = Web::of(&d);
    for i in 0..3 {
        let jid = format!("user{i}@localhost");
        let a = w
            .api(
                "POST",
                "/api/accounts",
                &json!({"action": "create", "jid": jid, "password": "pw-1"}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let a = w
        .api(
            "POST",
            "/api/accounts",
            &json!({"action": "create", "jid": "user0@localhost", "password": "x"}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("exists already"), "{}", a.body);
    let a = w
        .api("GET", "/api/accounts?q=USER&page=0", &json!({}))
        .await;
    assert_eq!(a.json()["total"], 3, "{}", a.body);
    assert_eq!(a.json()["accounts"][0], "user0@localhost");
    let a = w
        .api("GET", "/api/accounts?domain=localhost&q=ali", &json!({}))
        .await;
    assert_eq!(a.json()["accounts"], json!(["alice@localhost"]));

    // reset: the old password stops working, the new one works
    let a = w
        .api(
            "POST",
            "/api/accounts",
            &json!({"action": "password", "jid": "user1@localhost", "password": "pw-2"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!login_works(&d, "user1", "pw-1").await);
    assert!(login_works(&d, "user1", "pw-2").await);

    // delete: alice is online and bob has her as a contact (both ways); her stream is
    // closed, bob learns she is gone, and she cannot log in again
    let (mut bob, _) = Raw::login(d.starttls, "localhost", "bob", "bob-pw", "b").await;
    let (mut alice, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "a").await;
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await;
    alice.wait_for("type='subscribe'").await;
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await;
    bob.wait_for("type='subscribed'").await;
    let a = w
        .api(
            "POST",
            "/api/accounts",
            &json!({"action": "delete", "jid": "alice@localhost"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let end = alice.read_to_close().await;
    assert!(end.contains("not-authorized"), "{end}");
    let gone = bob.wait_for("type='unsubscribed'").await;
    assert!(gone.contains("from='alice@localhost'"), "{gone}");
    assert!(!login_works(&d, "alice", "alice-pw").await);
    let a = w.api("GET", "/api/accounts?q=alice", &json!({})).await;
    assert_eq!(a.json()["total"], 0);
    let a = w
        .api(
            "POST",
            "/api/accounts",
            &json!({"action": "delete", "jid": "alice@localhost"}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("no account"), "{}", a.body);

    // the page lists and searches too
    let w = logged_in(&d).await;
    let page = w.get("/admin/accounts?q=user").await;
    assert!(
        page.body.contains("user2@localhost") && !page.body.contains("bob@localhost"),
        "{}",
        page.body
    );
    assert!(page.body.contains("3 account(s)"), "{}", page.body);
    // a page beyond the last shows the last; an endless search is refused
    let page = w
        .get(&format!("/admin/accounts?q=user&page={}", usize::MAX))
        .await;
    assert!(page.body.contains("page 1 of 1"), "{}", page.body);
    let a = w
        .api(
            "GET",
            &format!("/api/accounts?page={}", usize::MAX),
            &json!({}),
        )
        .await;
    assert_eq!(
        (a.status, a.json()["page"].clone()),
        (200, json!(0)),
        "{}",
        a.body
    );
    let long = "a".repeat(300);
    assert_eq!(
        w.get(&format!("/admin/accounts?q={long}")).await.status,
        400
    );
    // a person must tick "sure" before a delete from the page
    let del = [("action", "delete"), ("jid", "user2@localhost")];
    let a = w.submit("/admin/accounts", &del).await;
    assert!(a.status == 400 && a.body.contains("tick"), "{}", a.body);
    assert!(login_works(&d, "user2", "pw-1").await);
    let del = [
        ("action", "delete"),
        ("jid", "user2@localhost"),
        ("confirm", "yes"),
    ];
    let a = w.submit("/admin/accounts", &del).await;
    assert!(a.body.contains("user2@localhost deleted"), "{}", a.body);
    assert!(!login_works(&d, "user2", "pw-1").await);
}

#[tokio::test]
async fn a_public_http_address_needs_an_administrator() {
    let public = "[[domain]]\nname = \"example.org\"\n[http]\naddress = \"0.0.0.0:5280\"\n";
    let (ok, out) = check_config(public);
    assert!(!ok && out.contains("needs an administrator"), "{out}");
    let (ok, out) = check_config(&format!("admins = [\"boss@example.org\"]\n{public}"));
    assert!(ok, "{out}");
}

/// Polls a page with the session until it is sent to the login page (the session
/// ended); false when it still answers after 10 s.
async fn logged_out(w: &Web) -> bool {
    for _ in 0..100 {
        let a = w.get("/admin/settings").await;
        if a.status == 303 && a.header("location").as_deref() == Some("/admin/login") {
            return true;
        }
        assert_eq!(a.status, 200, "{}", a.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_deleted_or_reset_administrator_loses_the_webadmin_session() {
    let mut o = with_admin("");
    o.top = format!("admins = [\"{ADMIN}\", \"boss2@localhost\"]");
    o.accounts.push(("boss2".into(), "boss2-pw".into()));
    let d = Daemon::with(o);
    let boss = logged_in(&d).await;
    let mut boss2 = Web::of(&d);
    assert_eq!(boss2.login("boss2@localhost", "boss2-pw").await.status, 303);
    // storage confirms a live session: it goes on past the recheck interval
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(boss.get("/admin/settings").await.status, 200);
    assert_eq!(boss2.get("/admin/settings").await.status, 200);

    // boss2's password is reset (by a script with the token): the session ends
    let a = Web::of(&d)
        .api(
            "POST",
            "/api/accounts",
            &json!({"action": "password", "jid": "boss2@localhost", "password": "new-pw"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        logged_out(&boss2).await,
        "a reset administrator keeps the session"
    );
    // the cookie is worth nothing more, even for the API
    let a = boss2.request("GET", "/api/settings", &[], "").await;
    assert_eq!(a.status, 401, "{}", a.body);

    // boss removes the account over XMPP (XEP-0077 <remove/>): the session ends too
    assert_eq!(boss.get("/admin/accounts").await.status, 200);
    let (mut r, _) = Raw::login(d.starttls, "localhost", "boss", ADMIN_PW, "r").await;
    r.send("<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>")
        .await;
    let answer = r.wait_for("id='rm'").await;
    assert!(answer.contains("type='result'"), "{answer}");
    assert!(
        logged_out(&boss).await,
        "a deleted administrator keeps the session"
    );
}

#[tokio::test]
async fn check_config_reads_the_webadmin_overlay_as_the_daemon_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let cfg = dir.path().join("xmppd.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .expect("write");
    let run = || {
        let out = std::process::Command::new(xmppd_bin())
            .args(["check-config", "--config"])
            .arg(&cfg)
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = run();
    assert!(ok, "{out}");
    // an overlay the daemon would refuse to start with: check-config says so too
    std::fs::write(data.join("settings.toml"), "channels = \"many\"\n").expect("overlay");
    let (ok, out) = run();
    assert!(!ok && out.contains("settings.toml"), "{out}");
}

#[tokio::test]
async fn channels_set_in_the_webadmin_refuse_the_next_connection() {
    let d = Daemon::with(with_admin(""));
    let w = Web::of(&d);
    let a = w
        .api(
            "POST",
            "/api/settings",
            &json!({"action": "channels", "channels": 1}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let (_alice, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "1").await;
    let mut second = Raw::connect(d.starttls, "localhost").await;
    let out = second.read_to_close().await;
    assert!(
        out.contains("<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
}

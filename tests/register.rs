//! In-band registration (XEP-0077) against the real daemon: signing up with Auto Signup
//! on and off, conflicts, malformed names, the per-address limit, password change with
//! Allow to Modify Password on and off, the limits, anonymous names, and both settings
//! changed by a reload while the server runs. Removal: `register_removal.rs`.

mod common;
use common::register::*;
use common::*;

#[tokio::test]
async fn without_auto_signup_there_is_no_registration() {
    let d = Daemon::start();
    let (mut r, f) = tls_stream(&d).await;
    assert!(
        !f.contains("iq-register"),
        "no stream feature when off: {f}"
    );
    r.send("<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    assert_eq!(outcome(&r.next_stanza().await), "service-unavailable");
    r.send(&register_set("s", "carol", "carol-pw")).await;
    assert_eq!(outcome(&r.next_stanza().await), "service-unavailable");
    // the stream is still usable: nothing was created, alice logs in on it
    assert!(
        r.auth_scram("SCRAM-SHA-256", "alice", "alice-pw")
            .await
            .starts_with("<success")
    );
    assert!(!login_works(&d, "carol", "carol-pw").await);
}

#[tokio::test]
async fn auto_signup_registers_then_the_new_account_logs_in() {
    let d = Daemon::with(Options {
        log_level: "all".into(),
        ..signup_on()
    });
    // the domain requires TLS: no feature and no registration on the clear stream
    let mut clear = Raw::connect(d.starttls, DOMAIN).await;
    let f = clear.open().await;
    assert!(!f.contains("iq-register"), "{f}");
    clear.send(&register_set("c", "carol", "carol-pw")).await;
    assert_eq!(outcome(&clear.next_stanza().await), "policy-violation");

    let (mut r, f) = tls_stream(&d).await;
    assert!(
        f.contains("<register xmlns='http://jabber.org/features/iq-register'/>"),
        "{f}"
    );
    r.send("<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>")
        .await;
    let form = r.next_stanza().await;
    for part in [
        "type='result'",
        "<instructions>",
        "<username/>",
        "<password/>",
        "xmlns='jabber:x:data'",
        "var='username'",
        "var='password'",
    ] {
        assert!(form.contains(part), "{part} missing: {form}");
    }
    r.send(&register_set("s", "Carol", "carol-pw")).await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    // one registration per stream
    r.send(&register_set("s2", "dave", "dave-pw")).await;
    assert_eq!(outcome(&r.next_stanza().await), "not-acceptable");
    // the same stream authenticates as the new account (the name was nodeprepped)
    let ok = r.auth_scram("SCRAM-SHA-256", "carol", "carol-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
    let jid = r.bind(Some("new")).await;
    assert_eq!(jid, "carol@localhost/new");
    assert!(!login_works(&d, "carol", "wrong").await);
    assert!(!login_works(&d, "dave", "dave-pw").await);
    let list = d.cli(&["account", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("carol@localhost"));

    // the data form works as well as the legacy fields
    let (mut r, _) = tls_stream(&d).await;
    r.send(
        "<iq type='set' id='x'><query xmlns='jabber:iq:register'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>jabber:iq:register</value></field>\
         <field var='username'><value>erin</value></field>\
         <field var='password'><value>erin-pw</value></field></x></query></iq>",
    )
    .await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    assert!(login_works(&d, "erin", "erin-pw").await);
    // the XML is logged at this level, the passwords are not (fields and form alike)
    let log = d.log();
    assert!(log.contains("jabber:iq:register"), "the XML is logged");
    for pw in ["carol-pw", "erin-pw", "dave-pw"] {
        assert!(!log.contains(pw), "{pw} in the log");
    }
}

#[tokio::test]
async fn passwords_stay_out_of_the_log_however_they_are_written() {
    let d = Daemon::with(Options {
        log_level: "all".into(),
        ..signup_on()
    });
    // a data form with an entity-encoded var, the value with its own xmlns, split
    // across reads in the middle of the password
    let (mut r, _) = tls_stream(&d).await;
    let form = "<iq type='set' id='x'><query xmlns='jabber:iq:register'>\
         <x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>jabber:iq:register</value></field>\
         <field var='username'><value>nina</value></field>\
         <field var='passw&#111;rd'><value xmlns='jabber:x:data'>nina-secret-pw</value></field></x></query></iq>";
    let cut = form.find("secret").expect("cut");
    r.send(&form[..cut]).await;
    // the server reads what has arrived before the rest comes
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    r.send(&form[cut..]).await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    // prefixed legacy fields
    let (mut r, _) = tls_stream(&d).await;
    r.send(
        "<iq type='set' id='p'><reg:query xmlns:reg='jabber:iq:register'>\
         <reg:username>olga</reg:username><reg:password>olga-secret-pw</reg:password></reg:query></iq>",
    )
    .await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    assert!(login_works(&d, "nina", "nina-secret-pw").await);
    assert!(login_works(&d, "olga", "olga-secret-pw").await);
    let log = d.log();
    assert!(log.contains("jabber:iq:register"), "the XML is logged");
    for secret in ["secret-pw", "nina-sec", "olga-secret"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[tokio::test]
async fn taken_malformed_and_incomplete_registrations_are_refused() {
    let d = Daemon::with(signup_on());
    let cases = [
        (register_set("1", "alice", "x"), "conflict"),
        (register_set("2", "ALICE", "x"), "conflict"),
        (register_set("3", "a@b", "x"), "jid-malformed"),
        (register_set("4", "a/b", "x"), "jid-malformed"),
        (register_set("5", "", "x"), "not-acceptable"),
        (register_set("6", "frank", ""), "not-acceptable"),
        (
            "<iq type='set' id='7'><query xmlns='jabber:iq:register'><username>frank</username></query></iq>".into(),
            "not-acceptable",
        ),
        (
            "<iq type='set' id='8'><query xmlns='jabber:iq:register'><remove/></query></iq>".into(),
            "registration-required",
        ),
    ];
    let (mut r, _) = tls_stream(&d).await;
    for (req, want) in cases {
        r.send(&req).await;
        let reply = r.next_stanza().await;
        assert_eq!(outcome(&reply), want, "{req}: {reply}");
    }
    // alice's password was not touched by the conflicting attempts
    assert!(login_works(&d, "alice", "alice-pw").await);
    assert!(!login_works(&d, "frank", "").await);
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let d = Daemon::with(Options {
        extra: "[limits]\nregistrations_per_ip = 2\n".into(),
        ..signup_on()
    });
    // a taken name counts too (it is how names are probed)
    for (user, want) in [
        ("u1", "result"),
        ("alice", "conflict"),
        ("u2", "resource-constraint"),
    ] {
        let (mut r, _) = tls_stream(&d).await;
        r.send(&register_set("r", user, "pw")).await;
        let reply = r.next_stanza().await;
        assert_eq!(outcome(&reply), want, "{user}: {reply}");
        if want == "resource-constraint" {
            assert!(reply.contains("too many registrations"), "{reply}");
        }
    }
    assert!(login_works(&d, "u1", "pw").await);
    assert!(!login_works(&d, "u2", "pw").await);
    // logging in is not registering: still fine from this address
    assert!(login_works(&d, "bob", "bob-pw").await);
}

#[tokio::test]
async fn the_server_wide_registration_cap_holds_whatever_the_address() {
    let d = Daemon::with(Options {
        extra: "[limits]\nregistrations_per_ip = 10\nregistrations_global = 2\n".into(),
        ..signup_on()
    });
    for (user, want) in [
        ("g1", "result"),
        ("g2", "result"),
        ("g3", "resource-constraint"),
    ] {
        assert_eq!(register(&d, user, "pw").await, want, "{user}");
    }
    assert!(!login_works(&d, "g3", "pw").await);
}

#[tokio::test]
async fn password_change_when_allowed() {
    let d = Daemon::with(Options {
        extra: "[limits]\n".into(),
        ..Options::default()
    });
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r1").await;
    // what is on file
    let info = ask(
        &mut a,
        "<iq type='get' id='i'><query xmlns='jabber:iq:register'/></iq>",
        "i",
    )
    .await;
    assert!(info.contains("<registered/>"), "{info}");
    assert!(info.contains("<username>alice</username>"), "{info}");
    // someone else's name, an empty password: refused, nothing changes
    let other = ask(&mut a, &register_set("o", "bob", "x"), "o").await;
    assert_eq!(outcome(&other), "bad-request");
    let empty = ask(&mut a, &register_set("e", "alice", ""), "e").await;
    assert_eq!(outcome(&empty), "not-acceptable");
    assert!(
        !empty.contains("<password"),
        "the request is not echoed: {empty}"
    );
    // addressed to the domain, as XEP-0077 §3.3 shows it: the answer comes from there
    let ok = ask(
        &mut a,
        "<iq type='set' id='c' to='localhost'><query xmlns='jabber:iq:register'>\
         <username>alice</username><password>new-pw</password></query></iq>",
        "c",
    )
    .await;
    assert_eq!(outcome(&ok), "result");
    assert!(ok.contains("from='localhost'"), "{ok}");
    assert!(login_works(&d, "alice", "new-pw").await);
    assert!(!login_works(&d, "alice", "alice-pw").await);
    // PLAIN (one derivation on the server side) agrees
    let (mut p, _) = tls_stream(&d).await;
    assert!(
        p.auth_plain("alice", "new-pw")
            .await
            .starts_with("<success")
    );
    // and without 'to' (slixmpp's way)
    let ok = ask(&mut a, &register_set("c2", "alice", "newer-pw"), "c2").await;
    assert_eq!(outcome(&ok), "result");
    assert!(login_works(&d, "alice", "newer-pw").await);
    assert!(!login_works(&d, "alice", "new-pw").await);
    // new keys, at the iteration count configured now (a reload changes it), for
    // SCRAM-SHA-1 as well as SHA-256
    reload(
        &d,
        "[limits]",
        "[auth]\nscram_iterations = 4999\n[limits]",
        1,
    );
    let ok = ask(&mut a, &register_set("c3", "alice", "newest-pw"), "c3").await;
    assert_eq!(outcome(&ok), "result");
    let (mut s1, _) = tls_stream(&d).await;
    let sha1 = s1.auth_scram("SCRAM-SHA-1", "alice", "newest-pw").await;
    assert!(sha1.starts_with("<success"), "{sha1}");
    let file = d.dir.path().join("export.xml");
    let out = d.cli(&["export", file.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).expect("export");
    let alice = &text[text
        .find("name='alice'")
        .or(text.find("name=\"alice\""))
        .expect("alice")..];
    let alice = &alice[..alice.find("</user>").expect("end of user")];
    assert!(alice.contains("<iter-count>4999</iter-count>"), "{alice}");
    let bob = &text[text
        .find("name='bob'")
        .or(text.find("name=\"bob\""))
        .expect("bob")..];
    assert!(bob.contains("<iter-count>10000</iter-count>"), "{bob}");
}

/// Log in over a stream without TLS (the domain does not require it).
async fn clear_session(d: &Daemon, user: &str, password: &str) -> Raw {
    let mut r = Raw::connect(d.starttls, DOMAIN).await;
    r.open().await;
    let ok = r.auth_scram("SCRAM-SHA-256", user, password).await;
    assert!(ok.starts_with("<success"), "{ok}");
    r.bind(Some("clear")).await;
    r
}

#[tokio::test]
async fn a_new_password_travels_in_the_clear_only_where_plain_would() {
    let d = Daemon::with(Options {
        domain_keys: "require_tls = false\nplain_without_tls = false".into(),
        ..Options::default()
    });
    let mut a = clear_session(&d, "alice", "alice-pw").await;
    let no = ask(&mut a, &register_set("c", "alice", "new-pw"), "c").await;
    assert_eq!(outcome(&no), "not-authorized", "{no}");
    assert!(login_works(&d, "alice", "alice-pw").await);
    // over TLS on the same domain it works
    let (mut t, _) = Raw::bound(d.starttls, DOMAIN, "bob", "bob-pw", "t").await;
    let ok = ask(&mut t, &register_set("c", "bob", "bob-new"), "c").await;
    assert_eq!(outcome(&ok), "result");

    // where PLAIN is offered in the clear, so is a password change
    let d = Daemon::with(Options {
        domain_keys: "require_tls = false\nplain_without_tls = true".into(),
        ..Options::default()
    });
    let mut a = clear_session(&d, "alice", "alice-pw").await;
    let ok = ask(&mut a, &register_set("c", "alice", "new-pw"), "c").await;
    assert_eq!(outcome(&ok), "result");
}

#[tokio::test]
async fn password_change_when_not_allowed() {
    let d = Daemon::with(Options {
        domain_keys: "allow_modify_password = false".into(),
        ..Options::default()
    });
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r1").await;
    let no = ask(&mut a, &register_set("c", "alice", "new-pw"), "c").await;
    assert_eq!(outcome(&no), "not-allowed");
    assert!(login_works(&d, "alice", "alice-pw").await);
    assert!(!login_works(&d, "alice", "new-pw").await);
}

#[tokio::test]
async fn anonymous_names_cannot_be_registered() {
    let d = Daemon::with(Options {
        domain_keys: "auto_signup = true\nanonymous = true".into(),
        ..Options::default()
    });
    let (mut r, _) = tls_stream(&d).await;
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        .await;
    assert!(r.next_stanza().await.starts_with("<success"));
    let jid = r.bind(None).await;
    let name = &jid[..jid.find('@').expect("node")];
    assert!(name.starts_with("anon-"), "{jid}");
    // the live anonymous user's name, and any other of the kind: taken
    assert_eq!(register(&d, name, "pw").await, "conflict");
    assert_eq!(
        register(&d, "anon-0000000000000000", "pw").await,
        "conflict"
    );
    assert!(!login_works(&d, name, "pw").await);
    // nor can the administrator create one
    let out = d.cli(&["account", "add", "anon-1@localhost", "--password", "pw"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reserved"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_signup_before_login_is_only_for_the_streams_domain() {
    let d = Daemon::with(Options {
        extra: "[[domain]]\nname = \"other.test\"\nauto_signup = true\n".into(),
        ..signup_on()
    });
    let (mut r, _) = tls_stream(&d).await;
    for to in ["other.test", "irc.localhost", "bob@localhost"] {
        r.send(&format!(
            "<iq type='set' id='t' to='{to}'><query xmlns='jabber:iq:register'>\
             <username>walt</username><password>walt-pw</password></query></iq>"
        ))
        .await;
        let reply = r.next_stanza().await;
        assert_eq!(outcome(&reply), "service-unavailable", "{to}: {reply}");
    }
    assert!(!login_works(&d, "walt", "walt-pw").await);
    // the stream's own domain, named or not, works
    r.send(
        "<iq type='set' id='t' to='localhost'><query xmlns='jabber:iq:register'>\
         <username>walt</username><password>walt-pw</password></query></iq>",
    )
    .await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    assert!(login_works(&d, "walt", "walt-pw").await);
}

#[tokio::test]
async fn password_changes_are_limited_per_account() {
    let d = Daemon::with(Options {
        extra: "[limits]\npassword_changes_per_account = 2\n".into(),
        ..Options::default()
    });
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r").await;
    for (id, pw, want) in [
        ("1", "pw-1", "result"),
        ("2", "pw-2", "result"),
        ("3", "pw-3", "resource-constraint"),
    ] {
        let reply = ask(&mut a, &register_set(id, "alice", pw), id).await;
        assert_eq!(outcome(&reply), want, "{reply}");
    }
    assert!(login_works(&d, "alice", "pw-2").await);
    assert!(!login_works(&d, "alice", "pw-3").await);
    // another account has its own budget
    let (mut b, _) = Raw::bound(d.starttls, DOMAIN, "bob", "bob-pw", "r").await;
    let ok = ask(&mut b, &register_set("1", "bob", "bob-new"), "1").await;
    assert_eq!(outcome(&ok), "result");
}

#[tokio::test]
async fn another_users_registration_request_is_answered_service_unavailable() {
    let d = Daemon::start();
    let (_a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r").await;
    let (mut b, _) = Raw::bound(d.starttls, DOMAIN, "bob", "bob-pw", "r").await;
    for (req, id) in [
        (
            "<iq type='get' id='g' to='alice@localhost'><query xmlns='jabber:iq:register'/></iq>",
            "g",
        ),
        (
            "<iq type='set' id='rm' to='alice@localhost'><query xmlns='jabber:iq:register'><remove/></query></iq>",
            "rm",
        ),
    ] {
        let reply = ask(&mut b, req, id).await;
        assert_eq!(outcome(&reply), "service-unavailable", "{reply}");
    }
    assert!(login_works(&d, "alice", "alice-pw").await);
}

#[tokio::test]
async fn anonymous_sessions_have_nothing_to_change_or_remove() {
    let d = Daemon::with(Options {
        domain_keys: "anonymous = true".into(),
        ..Options::default()
    });
    let (mut r, _) = tls_stream(&d).await;
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        .await;
    let ok = r.next_stanza().await;
    assert!(ok.starts_with("<success"), "{ok}");
    r.bind(None).await;
    for (req, id) in [
        (
            "<iq type='get' id='g'><query xmlns='jabber:iq:register'/></iq>".to_string(),
            "g",
        ),
        (
            "<iq type='set' id='rm'><query xmlns='jabber:iq:register'><remove/></query></iq>"
                .to_string(),
            "rm",
        ),
    ] {
        let reply = ask(&mut r, &req, id).await;
        assert_eq!(outcome(&reply), "registration-required", "{reply}");
    }
    // a registration request addressed to another domain is routed, not answered here
    let routed = ask(
        &mut r,
        "<iq type='get' id='gw' to='gateway.example'><query xmlns='jabber:iq:register'/></iq>",
        "gw",
    )
    .await;
    assert!(routed.contains("from='gateway.example'"), "{routed}");
    assert!(routed.contains("<remote-server-not-found"), "{routed}");
}

/// Replace `from` with `to` in the daemon's configuration and reload it (SIGHUP).
fn reload(d: &Daemon, from: &str, to: &str, reloads: usize) {
    let text = std::fs::read_to_string(&d.config).expect("config");
    assert!(text.contains(from), "{from} not in the configuration");
    std::fs::write(&d.config, text.replace(from, to)).expect("write config");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", reloads);
}

#[tokio::test]
async fn both_settings_follow_a_reload_at_once() {
    let d = Daemon::with(Options {
        domain_keys: "auto_signup = false\nallow_modify_password = true".into(),
        ..Options::default()
    });
    // a session bound before the reload
    let (mut a, _) = Raw::bound(d.starttls, DOMAIN, "alice", "alice-pw", "r").await;
    // a stream opened before the reload, still unauthenticated
    let (mut early, f) = tls_stream(&d).await;
    assert!(!f.contains("iq-register"), "{f}");

    reload(&d, "auto_signup = false", "auto_signup = true", 1);
    let (mut r, f) = tls_stream(&d).await;
    assert!(f.contains("iq-register"), "on after the reload: {f}");
    r.send(&register_set("s", "gina", "gina-pw")).await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    // the stream opened before the reload may register too: read per request
    early.send(&register_set("s", "hank", "hank-pw")).await;
    assert_eq!(outcome(&early.next_stanza().await), "result");
    assert!(login_works(&d, "gina", "gina-pw").await);

    reload(
        &d,
        "allow_modify_password = true",
        "allow_modify_password = false",
        2,
    );
    let no = ask(&mut a, &register_set("c", "alice", "new-pw"), "c").await;
    assert_eq!(outcome(&no), "not-allowed", "the same session, refused now");

    reload(&d, "auto_signup = true", "auto_signup = false", 3);
    let (mut r, f) = tls_stream(&d).await;
    assert!(!f.contains("iq-register"), "off again: {f}");
    r.send(&register_set("s", "ivan", "ivan-pw")).await;
    assert_eq!(outcome(&r.next_stanza().await), "service-unavailable");

    reload(
        &d,
        "allow_modify_password = false",
        "allow_modify_password = true",
        4,
    );
    let ok = ask(&mut a, &register_set("c2", "alice", "new-pw"), "c2").await;
    assert_eq!(outcome(&ok), "result");
    // the result is sent after the new keys are stored
    assert!(login_works(&d, "alice", "new-pw").await);
}

#[test]
fn slixmpp_registers_changes_its_password_and_cancels() {
    let d = Daemon::with(signup_on());
    let out = python(
        "slix.py",
        &["register", &d.starttls.port().to_string(), DOMAIN],
    );
    for line in [
        "registration form has username and password",
        "registered kate",
        "online kate@localhost/slix",
        "password changed",
        "online again with the new password",
        "old password refused",
        "registration cancelled",
        "removed account refused",
    ] {
        assert!(out.contains(line), "{line} missing:\n{out}");
    }
}

/// Admin rights go by name: nobody may sign up under the name of a configured
/// administrator whose account does not exist yet (or was deleted), in any case;
/// `xmppd account add` still creates it. The daemon warns about the missing account.
#[tokio::test]
async fn an_administrators_name_cannot_be_self_registered() {
    let d = Daemon::with(Options {
        top: "admins = [\"boss@localhost\"]".into(),
        ..signup_on()
    });
    d.wait_log("a configured administrator account does not exist", 1);
    for name in ["boss", "Boss"] {
        let (mut r, _) = tls_stream(&d).await;
        r.send(&register_set("s", name, "boss-pw")).await;
        assert_eq!(outcome(&r.next_stanza().await), "not-allowed", "{name}");
    }
    assert!(!login_works(&d, "boss", "boss-pw").await);
    // anyone else still signs up
    let (mut r, _) = tls_stream(&d).await;
    r.send(&register_set("s", "carol", "carol-pw")).await;
    assert_eq!(outcome(&r.next_stanza().await), "result");
    // the administrator's tools may create it
    d.add_account("boss", "boss-pw");
    assert!(login_works(&d, "boss", "boss-pw").await);
}

//! XEP-0050 ad-hoc commands with the XEP-0133 administration commands against the
//! real daemon: slixmpp's own xep_0050 plugin run by an administrator (add a user who
//! then logs in, change a password, the online users, an announcement, delete a user
//! whose live session ends) and by a user who is not one (refused); raw XML for the
//! errors, the bound on open commands and the removal path.

mod common;
use common::register::*;
use common::*;

const CMD: &str = "http://jabber.org/protocol/commands";
const ADMIN: &str = "http://jabber.org/protocol/admin";

fn admin_options() -> Options {
    Options {
        top: "admins = [\"alice@localhost\"]".into(),
        accounts: vec![
            ("alice".into(), "alice-pw".into()),
            ("bob".into(), "bob-pw".into()),
            ("dave".into(), "dave-pw".into()),
        ],
        ..Options::default()
    }
}

#[test]
fn slixmpp_administers_users_with_the_xep_0133_commands() {
    let d = Daemon::with(Options {
        log_level: "all".into(),
        ..admin_options()
    });
    let out = python("adhoc.py", &[&d.starttls.port().to_string(), DOMAIN]);
    for line in [
        "admin sees add-user announce change-user-password delete-user get-online-users-list get-online-users-num",
        "non-admin sees 0 commands",
        "server advertises commands",
        "non-admin refused: forbidden",
        "add-user: carol@localhost was added",
        "add-user again: conflict",
        "carol logged in with the new password",
        "old password refused",
        "online: alice@localhost bob@localhost carol@localhost",
        "online count: 3",
        "bob got headline from localhost: Maintenance: back in 5",
        "carol got headline from localhost: Maintenance: back in 5",
        "delete-user: deleted: carol@localhost",
        "carol's session was closed",
        "deleted account refused",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    // the XML log (level "all") hides the passwords the forms carried
    let log = d.log();
    assert!(log.contains("admin#add-user"), "the XML is logged");
    for pw in ["carol-pw", "carol-new"] {
        assert!(!log.contains(pw), "{pw} in the log");
    }
}

fn execute(id: &str, node: &str, to: &str) -> String {
    format!(
        "<iq type='set' id='{id}' to='{to}'><command xmlns='{CMD}' node='{ADMIN}#{node}' action='execute'/></iq>"
    )
}

fn complete(id: &str, node: &str, sessionid: &str, fields: &str) -> String {
    format!(
        "<iq type='set' id='{id}' to='localhost'><command xmlns='{CMD}' node='{ADMIN}#{node}' \
         action='complete' sessionid='{sessionid}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>{ADMIN}</value></field>{fields}</x></command></iq>"
    )
}

fn sessionid(reply: &str) -> String {
    let at = reply.find("sessionid='").expect("sessionid") + "sessionid='".len();
    reply[at..].split('\'').next().expect("value").to_string()
}

/// Whether `reply` is an error with the stanza condition `cond` and, if given, XEP-0050's
/// specific condition.
fn is_error(reply: &str, cond: &str, specific: Option<&str>) -> bool {
    reply.contains("type='error'")
        && reply.contains(&format!(
            "<{cond} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        ))
        && specific.is_none_or(|s| reply.contains(&format!("<{s} xmlns='{CMD}'/>")))
}

#[tokio::test]
async fn errors_follow_xep_0050() {
    let d = Daemon::with(Options {
        extra: "[[domain]]\nname = \"b.test\"\n".into(),
        ..admin_options()
    });
    let (mut a, _) = Raw::login(d.starttls, DOMAIN, "alice", "alice-pw", "x").await;
    let (mut b, _) = Raw::login(d.starttls, DOMAIN, "bob", "bob-pw", "x").await;

    // disco: advertised to all, the commands listed for the administrator only
    let items = format!(
        "<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items' node='{CMD}'/></iq>"
    );
    let r = ask(&mut a, &items, "items").await;
    assert_eq!(r.matches("<item ").count(), 6, "{r}");
    assert!(r.contains(&format!("node='{ADMIN}#delete-user'")), "{r}");
    let r = ask(&mut b, &items, "items").await;
    assert!(r.contains("type='result'") && !r.contains("<item "), "{r}");
    let info = "<iq type='get' id='info' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>";
    let r = ask(&mut b, info, "info").await;
    assert!(r.contains(&format!("var='{CMD}'")), "{r}");

    // not an administrator: forbidden, here and at another hosted domain
    let r = ask(&mut b, &execute("f", "add-user", "localhost"), "f").await;
    assert!(is_error(&r, "forbidden", None), "{r}");
    let r = ask(&mut b, &execute("f2", "add-user", "b.test"), "f2").await;
    assert!(
        is_error(&r, "forbidden", None) && r.contains("from='b.test'"),
        "{r}"
    );

    // an unknown command; completing without a session, or with someone else's
    let r = ask(&mut a, &execute("u", "reboot-the-moon", "localhost"), "u").await;
    assert!(is_error(&r, "item-not-found", None), "{r}");
    let r = ask(&mut a, &complete("c", "add-user", "nope", ""), "c").await;
    assert!(is_error(&r, "bad-request", Some("bad-sessionid")), "{r}");

    // a form: the session goes on through bad submissions, then is canceled
    let r = ask(&mut a, &execute("e", "add-user", "localhost"), "e").await;
    assert!(
        r.contains("status='executing'") && r.contains("var='accountjid'"),
        "{r}"
    );
    let sid = sessionid(&r);
    let foreign = "<field var='accountjid'><value>zed@b.test</value></field>\
                   <field var='password'><value>pw</value></field>";
    let r = ask(&mut a, &complete("c1", "add-user", &sid, foreign), "c1").await;
    assert!(is_error(&r, "bad-request", Some("bad-payload")), "{r}");
    let mismatch = "<field var='accountjid'><value>zed@localhost</value></field>\
                    <field var='password'><value>a</value></field>\
                    <field var='password-verify'><value>b</value></field>";
    let r = ask(&mut a, &complete("c2", "add-user", &sid, mismatch), "c2").await;
    assert!(is_error(&r, "bad-request", Some("bad-payload")), "{r}");
    let cancel = format!(
        "<iq type='set' id='x' to='localhost'><command xmlns='{CMD}' node='{ADMIN}#add-user' action='cancel' sessionid='{sid}'/></iq>"
    );
    let r = ask(&mut a, &cancel, "x").await;
    assert!(r.contains("status='canceled'"), "{r}");
    let ok = "<field var='accountjid'><value>zed@localhost</value></field>\
              <field var='password'><value>zed-pw</value></field>\
              <field var='password-verify'><value>zed-pw</value></field>";
    // the canceled session used again: expired
    let r = ask(&mut a, &complete("c3", "add-user", &sid, ok), "c3").await;
    assert!(is_error(&r, "not-allowed", Some("session-expired")), "{r}");
    // an action XEP-0050 does not define; an empty sessionid is a first request
    let r = ask(
        &mut a,
        &execute("ma", "add-user", "localhost").replace("action='execute'", "action='jump'"),
        "ma",
    )
    .await;
    assert!(is_error(&r, "bad-request", Some("malformed-action")), "{r}");
    let r = ask(
        &mut a,
        &execute("es", "add-user", "localhost").replace("action='execute'", "sessionid=''"),
        "es",
    )
    .await;
    assert!(r.contains("status='executing'"), "{r}");
    assert!(
        !login_works(&d, "zed", "zed-pw").await,
        "nothing was created"
    );

    // the administrator administers another hosted domain's accounts at that domain;
    // a session started there is not completed at localhost
    let items_b = items.replace("to='localhost'", "to='b.test'");
    let r = ask(&mut a, &items_b, "items").await;
    assert_eq!(r.matches("<item ").count(), 6, "{r}");
    assert!(r.contains("jid='b.test'"), "{r}");
    let r = ask(&mut a, &execute("bx", "add-user", "b.test"), "bx").await;
    assert!(
        r.contains("status='executing'") && r.contains("from='b.test'"),
        "{r}"
    );
    let sid = sessionid(&r);
    let zed_b = "<field var='accountjid'><value>zed@b.test</value></field>\
                 <field var='password'><value>zed-pw</value></field>\
                 <field var='password-verify'><value>zed-pw</value></field>";
    let r = ask(&mut a, &complete("bl", "add-user", &sid, zed_b), "bl").await;
    assert!(is_error(&r, "bad-request", Some("bad-sessionid")), "{r}");
    let r = ask(
        &mut a,
        &complete("bc", "add-user", &sid, zed_b).replace("to='localhost'", "to='b.test'"),
        "bc",
    )
    .await;
    assert!(
        r.contains("status='completed'") && r.contains("zed@b.test was added"),
        "{r}"
    );
    let (_, jid) = Raw::login(d.starttls, "b.test", "zed", "zed-pw", "z").await;
    assert_eq!(jid, "zed@b.test/z");

    // open commands are bounded per administrator: abandoned ones never lock the
    // administrator out, the oldest is closed for a new one
    let mut first = String::new();
    for i in 0..8 {
        let id = format!("open{i}");
        let r = ask(&mut a, &execute(&id, "announce", "localhost"), &id).await;
        assert!(r.contains("status='executing'"), "{r}");
        if i == 0 {
            first = sessionid(&r);
        }
    }
    let r = ask(&mut a, &execute("over", "announce", "localhost"), "over").await;
    assert!(r.contains("status='executing'"), "{r}");
    let newest = sessionid(&r);
    let hi = "<field var='announcement'><value>hi</value></field>";
    let r = ask(&mut a, &complete("old", "announce", &first, hi), "old").await;
    assert!(is_error(&r, "not-allowed", Some("session-expired")), "{r}");
    let r = ask(&mut a, &complete("new", "announce", &newest, hi), "new").await;
    assert!(r.contains("status='completed'"), "{r}");
    // a command without a form still runs
    let num = format!(
        "<iq type='set' id='num' to='localhost'><command xmlns='{CMD}' node='{ADMIN}#get-online-users-num'/></iq>"
    );
    let r = ask(&mut a, &num, "num").await;
    assert!(
        r.contains("status='completed'") && r.contains("<value>2</value>"),
        "{r}"
    );

    // the server keeps serving everyone
    let r = ask(
        &mut b,
        "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>",
        "p",
    )
    .await;
    assert!(r.contains("type='result'"), "{r}");
}

#[tokio::test]
async fn delete_user_is_the_in_band_removal() {
    let d = Daemon::with(admin_options());
    let (mut a, _) = Raw::login(d.starttls, DOMAIN, "alice", "alice-pw", "x").await;
    let (mut b, _) = Raw::login(d.starttls, DOMAIN, "bob", "bob-pw", "b").await;
    let (mut dave, _) = Raw::login(d.starttls, DOMAIN, "dave", "dave-pw", "d").await;
    // bob and dave are contacts both ways (and get roster pushes)
    mutual_contacts(&mut b, "bob", &mut dave, "dave").await;

    let r = ask(&mut a, &execute("e", "delete-user", "localhost"), "e").await;
    let sid = sessionid(&r);
    let jids = "<field var='accountjids'><value>dave@localhost</value><value>nobody@localhost</value></field>";
    let r = ask(&mut a, &complete("c", "delete-user", &sid, jids), "c").await;
    assert!(
        r.contains("status='completed'")
            && r.contains("type='warn'")
            && r.contains("deleted: dave@localhost")
            && r.contains("no such account: nobody@localhost"),
        "{r}"
    );
    let end = dave.read_to_close().await;
    assert!(
        end.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{end}"
    );
    // bob's subscription was cancelled, as for XEP-0077 <remove/>
    b.wait_for("type='unsubscribed'").await;
    b.wait_for("subscription='none'").await;
    assert!(!login_works(&d, "dave", "dave-pw").await);
    // change-user-password of an account that does not exist
    let r = ask(
        &mut a,
        &execute("p", "change-user-password", "localhost"),
        "p",
    )
    .await;
    let sid = sessionid(&r);
    let f = "<field var='accountjid'><value>dave@localhost</value></field>\
             <field var='password'><value>x</value></field>";
    let r = ask(
        &mut a,
        &complete("p2", "change-user-password", &sid, f),
        "p2",
    )
    .await;
    assert!(is_error(&r, "item-not-found", None), "{r}");

    // the administrator deletes bob and its own account: the answer comes first, then
    // the account goes and its session is closed
    let r = ask(&mut a, &execute("s", "delete-user", "localhost"), "s").await;
    let sid = sessionid(&r);
    let jids = "<field var='accountjids'><value>alice@localhost</value><value>bob@localhost</value></field>";
    let r = ask(&mut a, &complete("self", "delete-user", &sid, jids), "self").await;
    assert!(
        r.contains("status='completed'")
            && r.contains("type='info'")
            && r.contains("deleted: bob@localhost")
            && r.contains("your own account alice@localhost is deleted after this answer"),
        "{r}"
    );
    let end = a.read_to_close().await;
    assert!(
        end.contains("<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{end}"
    );
    assert!(!login_works(&d, "alice", "alice-pw").await);
    assert!(!login_works(&d, "bob", "bob-pw").await);
}

/// An anonymous user is not an administrator: `forbidden`, like anyone else.
#[tokio::test]
async fn anonymous_users_are_forbidden() {
    let d = Daemon::with(Options {
        domain_keys: "anonymous = true".into(),
        extra: "[[domain]]\nname = \"b.test\"\n".into(),
        ..admin_options()
    });
    let (mut r, _) = tls_stream(&d).await;
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='ANONYMOUS'/>")
        .await;
    assert!(r.next_stanza().await.starts_with("<success"));
    r.bind(None).await;
    let reply = ask(&mut r, &execute("f", "add-user", "localhost"), "f").await;
    assert!(is_error(&reply, "forbidden", None), "{reply}");
    // and at another hosted domain (through the registry)
    let reply = ask(&mut r, &execute("f2", "add-user", "b.test"), "f2").await;
    assert!(is_error(&reply, "forbidden", None), "{reply}");
}

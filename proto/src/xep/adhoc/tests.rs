use super::*;

const D: &str = "example.org";
const ADMIN_JID: &str = "admin@example.org/desk";

fn el(s: &str) -> Element {
    s.parse().expect("xml")
}

fn request(node: &str, action: Option<&str>, sessionid: Option<&str>, form: &str) -> Request {
    let mut attrs = format!("node='{node}'");
    if let Some(a) = action {
        attrs.push_str(&format!(" action='{a}'"));
    }
    if let Some(s) = sessionid {
        attrs.push_str(&format!(" sessionid='{s}'"));
    }
    parse(&el(&format!(
        "<command xmlns='http://jabber.org/protocol/commands' {attrs}>{form}</command>"
    )))
    .expect("parse")
}

fn submit(fields: &[(&str, &[&str])]) -> String {
    let mut s = String::from(
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/admin</value></field>",
    );
    for (var, vals) in fields {
        s.push_str(&format!("<field var='{var}'>"));
        for v in *vals {
            s.push_str(&format!("<value>{v}</value>"));
        }
        s.push_str("</field>");
    }
    s.push_str("</x>");
    s
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("s{n}")
    }
}

/// Start `c` and return the session id of its form stage.
fn start(s: &mut Sessions, c: Command, now: Instant, id: &str) -> String {
    match decide(
        s,
        ADMIN_JID,
        D,
        request(c.node(), None, None, ""),
        now,
        || id.to_string(),
    ) {
        Step::Reply(r) => {
            assert_eq!(r.attr("status"), Some("executing"));
            assert_eq!(r.attr("sessionid"), Some(id));
            r.attr("sessionid").expect("id").to_string()
        }
        other => panic!("{other:?}"),
    }
}

fn failed(step: Step) -> CmdError {
    match step {
        Step::Fail(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn add_user_is_a_form_then_a_task() {
    let mut s = Sessions::default();
    let now = Instant::now();
    let mut next = ids();
    let Step::Reply(stage) = decide(
        &mut s,
        ADMIN_JID,
        D,
        request(Command::AddUser.node(), Some("execute"), None, ""),
        now,
        &mut next,
    ) else {
        panic!("form expected")
    };
    assert_eq!(stage.attr("node"), Some(Command::AddUser.node()));
    let x = stage.get_child("x", ns::DATA_FORMS).expect("form");
    assert_eq!(x.attr("type"), Some("form"));
    let vars: Vec<_> = x.children().filter_map(|f| f.attr("var")).collect();
    assert_eq!(
        vars,
        ["FORM_TYPE", "accountjid", "password", "password-verify"]
    );
    assert!(
        stage
            .get_child("actions", ns::COMMANDS)
            .is_some_and(|a| a.attr("execute") == Some("complete"))
    );
    assert_eq!(s.len(), 1);
    let id = stage.attr("sessionid").expect("sessionid").to_string();
    let form = submit(&[
        ("accountjid", &["NewUser@Example.org"]),
        ("password", &["pw"]),
        ("password-verify", &["pw"]),
    ]);
    let step = decide(
        &mut s,
        ADMIN_JID,
        D,
        request(Command::AddUser.node(), Some("complete"), Some(&id), &form),
        now,
        &mut next,
    );
    assert_eq!(
        step,
        Step::Run {
            task: Task::AddUser {
                user: "newuser".into(),
                password: "pw".into()
            },
            command: Command::AddUser,
            sessionid: id,
        }
    );
    assert!(s.is_empty(), "a completed session is closed");
}

#[test]
fn bad_forms_are_refused_and_the_session_stays_open() {
    let mut s = Sessions::default();
    let now = Instant::now();
    let id = start(&mut s, Command::AddUser, now, "a");
    let try_form = |s: &mut Sessions, form: String| {
        failed(decide(
            s,
            ADMIN_JID,
            D,
            request(Command::AddUser.node(), Some("complete"), Some(&id), &form),
            now,
            || unreachable!(),
        ))
    };
    let e = try_form(
        &mut s,
        submit(&[
            ("accountjid", &["u@example.org"]),
            ("password", &["a"]),
            ("password-verify", &["b"]),
        ]),
    );
    assert_eq!(
        (e.cond, e.specific),
        (ErrorCondition::BadRequest, Some("bad-payload"))
    );
    // another domain's account is not administered here
    let e = try_form(
        &mut s,
        submit(&[("accountjid", &["u@other.org"]), ("password", &["a"])]),
    );
    assert_eq!(e.cond, ErrorCondition::BadRequest);
    assert!(e.text.contains("example.org"), "{}", e.text);
    // no password; a domain JID; a reserved name; no form at all
    let e = try_form(&mut s, submit(&[("accountjid", &["u@example.org"])]));
    assert_eq!(
        (e.cond, e.specific),
        (ErrorCondition::BadRequest, Some("bad-payload"))
    );
    let e = try_form(
        &mut s,
        submit(&[("accountjid", &["example.org"]), ("password", &["a"])]),
    );
    assert_eq!(e.cond, ErrorCondition::BadRequest);
    let e = try_form(
        &mut s,
        submit(&[
            ("accountjid", &["anon-x@example.org"]),
            ("password", &["a"]),
        ]),
    );
    assert_eq!(e.cond, ErrorCondition::Conflict);
    let e = try_form(&mut s, String::new());
    assert_eq!(e.specific, Some("bad-payload"));
    let wrong_type = submit(&[]).replace("http://jabber.org/protocol/admin", "urn:other");
    assert_eq!(try_form(&mut s, wrong_type).specific, Some("bad-payload"));
    assert_eq!(s.len(), 1, "still open for a corrected form");
}

#[test]
fn cancel_unknown_sessions_and_actions() {
    let mut s = Sessions::default();
    let now = Instant::now();
    let node = Command::DeleteUser.node();
    let id = start(&mut s, Command::DeleteUser, now, "d");
    // another resource (or user) cannot take the session over
    let e = failed(decide(
        &mut s,
        "admin@example.org/phone",
        D,
        request(node, Some("cancel"), Some(&id), ""),
        now,
        || unreachable!(),
    ));
    assert_eq!(e.specific, Some("bad-sessionid"));
    // one stage: next and prev are bad actions
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        request(node, Some("next"), Some(&id), ""),
        now,
        || unreachable!(),
    ));
    assert_eq!(
        (e.cond, e.specific),
        (ErrorCondition::BadRequest, Some("bad-action"))
    );
    let Step::Reply(r) = decide(
        &mut s,
        ADMIN_JID,
        D,
        request(node, Some("cancel"), Some(&id), ""),
        now,
        || unreachable!(),
    ) else {
        panic!("canceled expected")
    };
    assert_eq!(r.attr("status"), Some("canceled"));
    assert!(s.is_empty());
    // the canceled session used again: expired (XEP-0050 §6)
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        request(node, Some("complete"), Some(&id), &submit(&[])),
        now,
        || unreachable!(),
    ));
    assert_eq!(
        (e.cond, e.specific),
        (ErrorCondition::NotAllowed, Some("session-expired"))
    );
    // a session id never handed out
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        request(node, Some("complete"), Some("never"), &submit(&[])),
        now,
        || unreachable!(),
    ));
    assert_eq!(e.specific, Some("bad-sessionid"));
    // complete without a session; an unknown node; an unknown action
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        request(node, Some("complete"), None, ""),
        now,
        || unreachable!(),
    ));
    assert_eq!(e.specific, Some("bad-sessionid"));
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        request("urn:nope", None, None, ""),
        now,
        || unreachable!(),
    ));
    assert_eq!(e.cond, ErrorCondition::ItemNotFound);
    let bad = parse(&el(
        "<command xmlns='http://jabber.org/protocol/commands' node='x' action='jump'/>",
    ))
    .expect_err("bad action");
    assert_eq!(
        (bad.cond, bad.specific),
        (ErrorCondition::BadRequest, Some("malformed-action"))
    );
    // an empty sessionid is none: a first request
    let first = parse(&el(
        "<command xmlns='http://jabber.org/protocol/commands' node='x' sessionid=''/>",
    ))
    .expect("parsed");
    assert_eq!(first.sessionid, None);
    let none = parse(&el(
        "<command xmlns='http://jabber.org/protocol/commands'/>",
    ))
    .expect_err("no node");
    assert_eq!(none.specific, Some("bad-payload"));
}

#[test]
fn sessions_are_bounded_and_expire() {
    let mut s = Sessions::default();
    let t0 = Instant::now();
    let first = start(&mut s, Command::Announce, t0, "first");
    for i in 1..MAX_SESSIONS {
        start(&mut s, Command::Announce, t0, &format!("n{i}"));
    }
    // one more: the oldest (abandoned) is closed, never the administrator locked out
    let second = start(&mut s, Command::Announce, t0, "over");
    assert_eq!(s.len(), MAX_SESSIONS);
    let announce = |id: &str| {
        request(
            Command::Announce.node(),
            Some("complete"),
            Some(id),
            &submit(&[("announcement", &["hi"])]),
        )
    };
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        announce(&first),
        t0,
        || unreachable!(),
    ));
    assert_eq!(
        (e.cond, e.specific),
        (ErrorCondition::NotAllowed, Some("session-expired"))
    );
    // after the time to live: expired, and pruned when the next one opens
    let later = t0 + SESSION_TTL;
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        announce(&second),
        later,
        || unreachable!(),
    ));
    assert_eq!(e.specific, Some("session-expired"));
    start(&mut s, Command::Announce, later, "fresh");
    assert_eq!(s.len(), 1, "expired sessions were dropped");
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        announce("n1"),
        later,
        || unreachable!(),
    ));
    assert_eq!(e.specific, Some("session-expired"), "a pruned one too");
}

#[test]
fn running_tasks_are_bounded() {
    let mut s = Sessions::default();
    let now = Instant::now();
    let count = || request(Command::OnlineUsersNum.node(), None, None, "");
    for _ in 0..MAX_RUNNING {
        assert!(matches!(
            decide(&mut s, ADMIN_JID, D, count(), now, || "c".into()),
            Step::Run { .. }
        ));
    }
    assert_eq!(s.running(), MAX_RUNNING);
    let e = failed(decide(&mut s, ADMIN_JID, D, count(), now, || "c".into()));
    assert_eq!(e.cond, ErrorCondition::ResourceConstraint);
    // a form completed meanwhile is refused too, and its session stays open to retry
    let id = start(&mut s, Command::Announce, now, "a");
    let complete = || {
        request(
            Command::Announce.node(),
            Some("complete"),
            Some(&id),
            &submit(&[("announcement", &["hi"])]),
        )
    };
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        D,
        complete(),
        now,
        || unreachable!(),
    ));
    assert_eq!(e.cond, ErrorCondition::ResourceConstraint);
    assert_eq!(s.len(), 1);
    s.task_ended();
    assert!(matches!(
        decide(&mut s, ADMIN_JID, D, complete(), now, || unreachable!()),
        Step::Run { .. }
    ));
    assert_eq!(s.running(), MAX_RUNNING);
}

#[test]
fn tasks_of_the_other_commands() {
    let task = |c: Command, f: &[(&str, &[&str])]| super::task(c, &el(&submit(f)), D);
    assert_eq!(
        task(
            Command::DeleteUser,
            &[(
                "accountjids",
                &["a@example.org", "B@example.org", "a@example.org"]
            )]
        ),
        Ok(Task::DeleteUsers {
            users: vec!["a".into(), "b".into()]
        })
    );
    assert!(task(Command::DeleteUser, &[("accountjids", &[])]).is_err());
    let many: Vec<String> = (0..=MAX_ACCOUNTS)
        .map(|i| format!("u{i}@example.org"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        task(Command::DeleteUser, &[("accountjids", &many)])
            .expect_err("too many")
            .cond,
        ErrorCondition::BadRequest
    );
    assert_eq!(
        task(
            Command::ChangePassword,
            &[("accountjid", &["a@example.org"]), ("password", &["new"])]
        ),
        Ok(Task::ChangePassword {
            user: "a".into(),
            password: "new".into()
        })
    );
    assert_eq!(
        task(Command::OnlineUsersList, &[("max_items", &["25"])]),
        Ok(Task::ListOnline { max: Some(25) })
    );
    assert_eq!(
        task(Command::OnlineUsersList, &[("max_items", &["none"])]),
        Ok(Task::ListOnline { max: None })
    );
    assert!(task(Command::OnlineUsersList, &[("max_items", &["lots"])]).is_err());
    assert_eq!(
        task(
            Command::Announce,
            &[
                ("subject", &["Maintenance"]),
                ("announcement", &["line 1", "line 2"])
            ]
        ),
        Ok(Task::Announce {
            subject: Some("Maintenance".into()),
            body: "line 1\nline 2".into()
        })
    );
    assert!(task(Command::Announce, &[("announcement", &[" "])]).is_err());
}

#[test]
fn the_online_count_completes_at_once() {
    let mut s = Sessions::default();
    let step = decide(
        &mut s,
        ADMIN_JID,
        D,
        request(Command::OnlineUsersNum.node(), None, None, ""),
        Instant::now(),
        || "n".into(),
    );
    assert_eq!(
        step,
        Step::Run {
            task: Task::CountOnline,
            command: Command::OnlineUsersNum,
            sessionid: "n".into()
        }
    );
    assert!(s.is_empty());
    let c = completed(Command::OnlineUsersNum, "n", Outcome::Count(3));
    assert_eq!(c.attr("status"), Some("completed"));
    let x = c.get_child("x", ns::DATA_FORMS).expect("result form");
    assert_eq!(x.attr("type"), Some("result"));
    let f = x
        .children()
        .find(|f| f.attr("var") == Some("onlineusersnum"))
        .expect("field");
    assert_eq!(
        f.get_child("value", ns::DATA_FORMS).map(|v| v.text()),
        Some("3".into())
    );
}

#[test]
fn online_users_are_the_domains_bare_jids_once_each() {
    let sessions: Vec<String> = [
        "b@example.org/1",
        "a@example.org/2",
        "b@example.org/3",
        "c@other.org/1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        online_users(&sessions, D, None),
        ["a@example.org", "b@example.org"]
    );
    assert_eq!(online_users(&sessions, D, Some(1)), ["a@example.org"]);
    let c = completed(
        Command::OnlineUsersList,
        "x",
        Outcome::Online(online_users(&sessions, D, None)),
    );
    let values: Vec<String> = c
        .get_child("x", ns::DATA_FORMS)
        .and_then(|x| {
            x.children()
                .find(|f| f.attr("var") == Some("onlineuserjids"))
        })
        .expect("field")
        .children()
        .map(|v| v.text())
        .collect();
    assert_eq!(values, ["a@example.org", "b@example.org"]);
}

#[test]
fn errors_carry_the_specific_condition_and_items_follow_the_rights() {
    let iq = el(
        "<iq xmlns='jabber:client' type='set' id='1' from='a@example.org/r' to='example.org'><command xmlns='http://jabber.org/protocol/commands' node='x'/></iq>",
    );
    let e = err(ErrorCondition::BadRequest, Some("bad-sessionid"), "no");
    let r = error(&iq, &e).expect("reply");
    let error_el = r.get_child("error", ns::CLIENT).expect("error");
    assert!(error_el.has_child("bad-request", ns::STANZAS));
    assert!(error_el.has_child("bad-sessionid", ns::COMMANDS));
    assert_eq!(error_el.attr("type"), Some("modify"));
    assert_eq!(r.attr("to"), Some("a@example.org/r"));
    let f = error(&iq, &forbidden()).expect("reply");
    assert!(
        f.get_child("error", ns::CLIENT)
            .is_some_and(|e| e.has_child("forbidden", ns::STANZAS))
    );
    let admin = items(D, true);
    let nodes: Vec<_> = admin.children().filter_map(|i| i.attr("node")).collect();
    assert_eq!(nodes.len(), Command::ALL.len());
    assert!(nodes.contains(&"http://jabber.org/protocol/admin#add-user"));
    assert!(admin.children().all(|i| i.attr("jid") == Some(D)));
    assert_eq!(items(D, false).children().count(), 0);
    let info = node_info(Command::Announce.node()).expect("info");
    assert!(
        info.children()
            .any(|c| c.attr("type") == Some("command-node"))
    );
    assert!(node_info("urn:nope").is_none());
    let m = announcement(D, "a@example.org/r", Some("S"), "B");
    assert_eq!(m.attr("type"), Some("headline"));
    assert_eq!(m.attr("from"), Some(D));
}

#[test]
fn a_session_belongs_to_the_domain_it_was_started_at() {
    let mut s = Sessions::default();
    let now = Instant::now();
    let id = start(&mut s, Command::Announce, now, "x");
    let form = submit(&[("announcement", &["hi"])]);
    let e = failed(decide(
        &mut s,
        ADMIN_JID,
        "other.org",
        request(Command::Announce.node(), Some("complete"), Some(&id), &form),
        now,
        || unreachable!(),
    ));
    assert_eq!(e.specific, Some("bad-sessionid"));
    let step = decide(
        &mut s,
        ADMIN_JID,
        "Example.org",
        request(Command::Announce.node(), Some("complete"), Some(&id), &form),
        now,
        || unreachable!(),
    );
    assert!(matches!(step, Step::Run { .. }), "{step:?}");
}

#[test]
fn the_delete_user_note_names_every_account() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let Outcome::Note { warn, text } = deleted_note(
        &s(&["a@example.org"]),
        &s(&["n@example.org"]),
        &s(&["f@example.org"]),
        Some("admin@example.org"),
    ) else {
        panic!("a note")
    };
    assert!(warn);
    assert_eq!(
        text,
        "deleted: a@example.org; no such account: n@example.org; \
         failed (see the server's log): f@example.org; \
         your own account admin@example.org is deleted after this answer"
    );
    let Outcome::Note { warn, text } = deleted_note(&s(&["a@example.org"]), &[], &[], None) else {
        panic!("a note")
    };
    assert!(!warn);
    assert_eq!(text, "deleted: a@example.org");
}

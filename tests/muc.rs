//! Chat rooms (XEP-0045) against the real daemon, with raw XML: creating and joining,
//! the occupant list, groupchat both ways, nick conflict, kick, ban, disco, and a
//! persistent room that survives a restart.

mod common;
use common::*;

const D: &str = "localhost";
const ROOM: &str = "lounge@conference.localhost";

async fn login(d: &Daemon, user: &str) -> Raw {
    Raw::login(d.starttls, D, user, &format!("{user}-pw"), "r")
        .await
        .0
}

fn opts() -> Options {
    Options {
        accounts: ["alice", "bob", "carol"]
            .iter()
            .map(|u| (u.to_string(), format!("{u}-pw")))
            .collect(),
        ..Options::default()
    }
}

async fn join(r: &mut Raw, room: &str, nick: &str) -> String {
    r.send(&format!(
        "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    r.wait_for("code='110'").await
}

async fn instant(r: &mut Raw, room: &str) {
    r.send(&format!("<iq type='set' id='inst' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>")).await;
    let res = r.wait_for("id='inst'").await;
    assert!(res.contains("type='result'"), "{res}");
}

#[tokio::test]
async fn create_join_chat_conflict_kick_ban() {
    let d = Daemon::with(opts());
    let mut a = login(&d, "alice").await;
    let mut b = login(&d, "bob").await;
    let mut c = login(&d, "carol").await;

    let me = join(&mut a, ROOM, "alice").await;
    assert!(
        me.contains("code='201'") && me.contains("affiliation='owner'"),
        "{me}"
    );
    // a locked room: nobody else yet
    b.send(&format!(
        "<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    let e = b.wait_for("type='error'").await;
    assert!(e.contains("item-not-found"), "{e}");
    instant(&mut a, ROOM).await;

    let me = join(&mut b, ROOM, "bob").await;
    assert!(me.contains("role='participant'"), "{me}");
    let list = b.wait_for(&format!("from='{ROOM}/alice'")).await;
    assert!(list.contains("affiliation='owner'"), "{list}");
    let subject = b.wait_for("<subject").await;
    assert!(subject.contains("type='groupchat'"), "{subject}");
    let seen = a.wait_for(&format!("from='{ROOM}/bob'")).await;
    assert!(
        seen.contains("jid='bob@localhost/r'"),
        "the owner sees real JIDs: {seen}"
    );

    // nick conflict
    c.send(&format!(
        "<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    let e = c.wait_for("type='error'").await;
    assert!(e.contains("<conflict"), "{e}");
    join(&mut c, ROOM, "carol").await;

    // groupchat both ways, reflected to the sender
    b.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='m1'><body>hi all</body></message>"
    ))
    .await;
    for r in [&mut a, &mut b, &mut c] {
        let m = r.wait_for("hi all").await;
        assert!(
            m.contains(&format!("from='{ROOM}/bob'")) && m.contains("urn:xmpp:occupant-id:0"),
            "{m}"
        );
    }
    a.send(&format!(
        "<message to='{ROOM}' type='groupchat'><body>hello bob</body></message>"
    ))
    .await;
    let m = b.wait_for("hello bob").await;
    assert!(
        m.contains(&format!("from='{ROOM}/alice'")) && m.contains("to='bob@localhost/r'"),
        "{m}"
    );
    // a private message
    c.send(&format!(
        "<message to='{ROOM}/bob' type='chat'><body>psst</body></message>"
    ))
    .await;
    let m = b.wait_for("psst").await;
    assert!(m.contains(&format!("from='{ROOM}/carol'")), "{m}");

    // kick carol
    a.send(&format!("<iq type='set' id='k' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='carol' role='none'><reason>out</reason></item></query></iq>")).await;
    assert!(a.wait_for("id='k'").await.contains("type='result'"));
    let k = c.wait_for("code='307'").await;
    assert!(
        k.contains("type='unavailable'") && k.contains("code='110'"),
        "{k}"
    );
    assert!(
        b.wait_for("code='307'")
            .await
            .contains(&format!("from='{ROOM}/carol'"))
    );
    // ban bob
    a.send(&format!("<iq type='set' id='ban' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast' jid='bob@localhost'/></query></iq>")).await;
    assert!(a.wait_for("id='ban'").await.contains("type='result'"));
    assert!(
        b.wait_for("code='301'")
            .await
            .contains("type='unavailable'")
    );
    b.send(&format!(
        "<presence to='{ROOM}/bob2'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    let e = b.wait_for("type='error'").await;
    assert!(e.contains("<forbidden"), "{e}");

    // disco: the service and the room
    a.send("<iq type='get' id='di' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    let i = a.wait_for("id='di'").await;
    assert!(
        i.contains("category='conference'") && i.contains("http://jabber.org/protocol/muc"),
        "{i}"
    );
    a.send("<iq type='get' id='dit' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let i = a.wait_for("id='dit'").await;
    assert!(i.contains(&format!("jid='{ROOM}'")), "{i}");
    a.send(&format!("<iq type='get' id='ri' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    let i = a.wait_for("id='ri'").await;
    assert!(
        i.contains("muc_temporary") && i.contains("muc_public"),
        "{i}"
    );
    // a room nobody created
    a.send("<iq type='get' id='nr' to='nowhere@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>").await;
    assert!(a.wait_for("id='nr'").await.contains("item-not-found"));
    // self-ping (XEP-0410)
    a.send(&format!(
        "<iq type='get' id='sp' to='{ROOM}/alice'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    assert!(a.wait_for("id='sp'").await.contains("type='result'"));
}

#[tokio::test]
async fn a_temporary_room_goes_when_its_last_occupant_leaves() {
    let d = Daemon::with(opts());
    let mut a = login(&d, "alice").await;
    join(&mut a, ROOM, "alice").await;
    instant(&mut a, ROOM).await;
    a.send(&format!("<presence to='{ROOM}/alice' type='unavailable'/>"))
        .await;
    a.wait_for("type='unavailable'").await;
    // gone: a message to it is an error, and entering creates it anew
    a.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='gone'><body>x</body></message>"
    ))
    .await;
    assert!(a.wait_for("id='gone'").await.contains("item-not-found"));
    assert!(join(&mut a, ROOM, "alice").await.contains("code='201'"));
}

#[tokio::test]
async fn disconnecting_leaves_the_room() {
    let d = Daemon::with(opts());
    let mut a = login(&d, "alice").await;
    let mut b = login(&d, "bob").await;
    join(&mut a, ROOM, "alice").await;
    instant(&mut a, ROOM).await;
    join(&mut b, ROOM, "bob").await;
    a.wait_for(&format!("from='{ROOM}/bob'")).await;
    drop(b);
    let left = a.wait_for("type='unavailable'").await;
    assert!(left.contains(&format!("from='{ROOM}/bob'")), "{left}");
}

#[tokio::test]
async fn a_persistent_room_survives_a_restart() {
    let mut d = Daemon::with(opts());
    {
        let mut a = login(&d, "alice").await;
        join(&mut a, ROOM, "alice").await;
        a.send(&format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_roomname'>
            <value>The Lounge</value></field><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>")).await;
        assert!(a.wait_for("id='cfg'").await.contains("type='result'"));
        a.send(&format!("<iq type='set' id='mem' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@localhost'/></query></iq>")).await;
        assert!(a.wait_for("id='mem'").await.contains("type='result'"));
        a.send(&format!("<message to='{ROOM}' type='groupchat'><subject>Kept across restarts</subject></message>")).await;
        a.wait_for("Kept across restarts").await;
        // the subject is reflected before the room's save commits; the room answers
        // the next request only after it (its writes hold its mailbox): then stop
        a.send(&format!("<iq type='get' id='sync' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
        a.wait_for("id='sync'").await;
        a.send("</stream:stream>").await;
    }
    d.terminate();
    d.spawn();
    let mut b = login(&d, "bob").await;
    b.send("<iq type='get' id='dit' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let i = b.wait_for("id='dit'").await;
    assert!(
        i.contains(&format!("jid='{ROOM}'")) && i.contains("The Lounge"),
        "{i}"
    );
    // bob is still a member of the members-only room, carol is not
    let me = join(&mut b, ROOM, "bob").await;
    assert!(
        me.contains("affiliation='member'") && !me.contains("code='201'"),
        "{me}"
    );
    let s = b.wait_for("<subject").await;
    assert!(s.contains("Kept across restarts"), "{s}");
    let mut c = login(&d, "carol").await;
    c.send(&format!(
        "<presence to='{ROOM}/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    assert!(
        c.wait_for("type='error'")
            .await
            .contains("registration-required")
    );
    // alice is still its owner
    let mut a = login(&d, "alice").await;
    a.send(&format!("<iq type='get' id='f' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>")).await;
    let f = a.wait_for("id='f'").await;
    assert!(
        f.contains("type='result'") && f.contains("The Lounge"),
        "{f}"
    );
}

/// slixmpp's XEP-0045 plugin, a client library nobody here wrote: three users join,
/// chat, one changes nick, one is kicked.
#[test]
fn slixmpp_users_join_chat_rename_and_kick() {
    let d = Daemon::with(opts());
    let out = python("muc.py", &["chat", &d.starttls.port().to_string(), D]);
    for line in [
        "alice joined: codes=[110, 201] affiliation=owner",
        "instant room configured",
        "carol sees occupants ['alice', 'bob', 'carol']",
        "alice got groupchat from alice: welcome everyone",
        "bob got groupchat from alice: welcome everyone",
        "carol got groupchat from alice: welcome everyone",
        "alice got groupchat from bob: thanks alice",
        "carol is now caroline",
        "alice sees caroline",
        "bob was kicked: codes=[110, 307]",
        "alice's roster ['alice', 'caroline']",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// The same plugin finds a persistent room, its name and its subject after a restart.
#[test]
fn slixmpp_finds_a_persistent_room_after_a_restart() {
    let mut d = Daemon::with(opts());
    let out = python("muc.py", &["persist", &d.starttls.port().to_string(), D]);
    assert!(out.contains("persistent room made"), "{out}");
    d.terminate();
    d.spawn();
    let out = python("muc.py", &["restored", &d.starttls.port().to_string(), D]);
    assert!(
        out.contains("listed [('keep@conference.localhost', 'Kept room')]"),
        "{out}"
    );
    assert!(
        out.contains("bob joined: codes=[110] subject=still here"),
        "{out}"
    );
}

/// Hostile occupants: a `from` inside the room, forged MUC payloads, floods, and one
/// user creating room after room; each is refused and the room keeps serving.
#[tokio::test]
async fn spoofing_floods_and_room_creation_are_bounded() {
    let d = Daemon::with(Options {
        extra: "[muc]\nmax_rooms_per_user = 3\nmessages_per_minute = 5\n".into(),
        ..opts()
    });
    let mut a = login(&d, "alice").await;
    let mut b = login(&d, "bob").await;
    join(&mut a, ROOM, "alice").await;
    instant(&mut a, ROOM).await;
    // bob claims in his presence to be an owner and moderator: the room says what he is
    b.send(&format!("<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/><x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/><status code='201'/></x><occupant-id xmlns='urn:xmpp:occupant-id:0' id='alices-id'/></presence>")).await;
    let me = b.wait_for("code='110'").await;
    assert!(
        me.contains("affiliation='none'") && me.contains("role='participant'"),
        "{me}"
    );
    assert!(
        !me.contains("code='201'") && !me.contains("alices-id"),
        "{me}"
    );
    let seen = a.wait_for(&format!("from='{ROOM}/bob'")).await;
    assert!(
        seen.contains("affiliation='none'") && !seen.contains("alices-id"),
        "{seen}"
    );

    // flood: the sixth message within a minute is refused, the others went out
    for n in 0..6 {
        b.send(&format!(
            "<message to='{ROOM}' type='groupchat' id='f{n}'><body>flood {n}</body></message>"
        ))
        .await;
    }
    let e = b.wait_for("id='f5'").await;
    assert!(
        e.contains("type='error'") && e.contains("resource-constraint"),
        "{e}"
    );
    a.wait_for("flood 4").await;

    // three rooms of his own are fine, a fourth is not (max_rooms_per_user)
    for n in 0..3 {
        join(&mut b, &format!("bobs{n}@conference.localhost"), "bob").await;
    }
    b.send("<presence to='bobs3@conference.localhost/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    let e = b.wait_for("from='bobs3@conference.localhost/bob'").await;
    assert!(
        e.contains("type='error'") && e.contains("resource-constraint"),
        "{e}"
    );

    // a stanza claiming to come from inside the room ends the sender's stream
    b.send(&format!(
        "<message from='{ROOM}/alice' to='{ROOM}' type='groupchat'><body>spoof</body></message>"
    ))
    .await;
    let rest = b.read_to_close().await;
    assert!(rest.contains("<invalid-from"), "{rest}");
    // bob's session ended: he leaves; alice still chats
    let left = a.wait_for("type='unavailable'").await;
    assert!(left.contains(&format!("from='{ROOM}/bob'")), "{left}");
    a.send(&format!(
        "<message to='{ROOM}' type='groupchat'><body>still here</body></message>"
    ))
    .await;
    let m = a.wait_for("still here").await;
    assert!(!m.contains("spoof"), "{m}");
}

#[tokio::test]
async fn mediated_invitation_reaches_the_invitee() {
    let d = Daemon::with(opts());
    let mut a = login(&d, "alice").await;
    let mut b = login(&d, "bob").await;
    join(&mut a, ROOM, "alice").await;
    instant(&mut a, ROOM).await;
    a.send(&format!("<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='bob@localhost'><reason>come in</reason></invite></x></message>")).await;
    let inv = b.wait_for("<invite").await;
    assert!(
        inv.contains(&format!("from='{ROOM}'"))
            && inv.contains("from='alice@localhost/r'")
            && inv.contains("come in"),
        "{inv}"
    );
    b.send(&format!("<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'><decline to='alice@localhost/r'><reason>busy</reason></decline></x></message>")).await;
    let dec = a.wait_for("<decline").await;
    assert!(
        dec.contains("from='bob@localhost'") && dec.contains("busy"),
        "{dec}"
    );
}

/// An idle persistent room's actor stops after `idle_timeout` and is started again,
/// from storage, by the next stanza; a temporary room is simply gone.
#[tokio::test]
async fn an_idle_persistent_room_stops_and_comes_back() {
    let d = Daemon::with(Options {
        extra: "[muc]\nidle_timeout = 1\n".into(),
        ..opts()
    });
    let mut a = login(&d, "alice").await;
    join(&mut a, ROOM, "alice").await;
    a.send(&format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")).await;
    assert!(a.wait_for("id='cfg'").await.contains("type='result'"));
    a.send(&format!(
        "<message to='{ROOM}' type='groupchat'><subject>Idle</subject></message>"
    ))
    .await;
    a.wait_for("<subject>Idle").await;
    a.send(&format!("<presence to='{ROOM}/alice' type='unavailable'/>"))
        .await;
    a.wait_for("type='unavailable'").await;
    d.wait_log("room stopped", 1);
    // restored on demand: disco works, alice is still the owner, the subject is kept
    a.send(&format!("<iq type='get' id='ri' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")).await;
    assert!(a.wait_for("id='ri'").await.contains("muc_persistent"));
    let me = join(&mut a, ROOM, "alice").await;
    assert!(
        me.contains("affiliation='owner'") && !me.contains("code='201'"),
        "{me}"
    );
    // (the empty subject of the first join is still unread: look for this one)
    let s = a.wait_for("<subject>Idle</subject>").await;
    assert!(s.contains(&format!("from='{ROOM}/alice'")), "{s}");
}

/// A saved room counts against its creator after its actor stopped, and the saved
/// rooms of a service are bounded: create → make persistent → leave → wait is no way
/// around `max_rooms_per_user`.
#[tokio::test]
async fn saved_rooms_count_against_their_creator_and_are_bounded() {
    let d = Daemon::with(Options {
        extra: "[muc]\nidle_timeout = 1\nmax_rooms_per_user = 1\nmax_saved_rooms = 1\n".into(),
        ..opts()
    });
    let mut a = login(&d, "alice").await;
    let mut b = login(&d, "bob").await;
    join(&mut a, ROOM, "alice").await;
    a.send(&format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")).await;
    assert!(a.wait_for("id='cfg'").await.contains("type='result'"));
    a.send(&format!("<presence to='{ROOM}/alice' type='unavailable'/>"))
        .await;
    a.wait_for("type='unavailable'").await;
    d.wait_log("room stopped", 1);
    // her saved room still counts: a second room is refused
    a.send("<presence to='second@conference.localhost/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    let e = a.wait_for("from='second@conference.localhost/alice'").await;
    assert!(
        e.contains("type='error'") && e.contains("resource-constraint"),
        "{e}"
    );
    // the service holds its one saved room: bob may create none either
    b.send("<presence to='bobs@conference.localhost/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>").await;
    let e = b.wait_for("from='bobs@conference.localhost/bob'").await;
    assert!(
        e.contains("type='error'") && e.contains("resource-constraint"),
        "{e}"
    );
    // the saved room itself is still there for both
    join(&mut b, ROOM, "bob").await;
}

/// The history and subject a newcomer gets after entering (everything up to the
/// subject, which comes last): the bodies in order, and the subject.
async fn history_then_subject(r: &mut Raw) -> (Vec<String>, String) {
    let mut bodies = Vec::new();
    loop {
        let s = r.next_non_presence().await;
        if s.contains("<subject") {
            return (bodies, s);
        }
        if let (Some(a), Some(b)) = (s.find("<body>"), s.find("</body>")) {
            assert!(s.contains("urn:xmpp:delay"), "history is stamped: {s}");
            bodies.push(s[a + 6..b].to_string());
        }
    }
}

/// A persistent room's history is stored (bounded to `muc.history`): it survives an
/// idle stop of the room's actor and a daemon restart. A message whose history write
/// failed is kept by the room (it does not stop while it holds something unstored) and
/// stored by the shutdown flush at SIGTERM.
#[tokio::test]
async fn a_persistent_rooms_history_and_subject_survive_idle_stop_and_sigterm() {
    let mut d = Daemon::with(Options {
        extra: "[muc]\nidle_timeout = 2\nhistory = 3\nmessages_per_minute = 1000\n".into(),
        ..opts()
    });
    let mut a = login(&d, "alice").await;
    join(&mut a, ROOM, "alice").await;
    a.send(&format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")).await;
    assert!(a.wait_for("id='cfg'").await.contains("type='result'"));
    for n in 1..=4 {
        a.send(&format!(
            "<message to='{ROOM}' type='groupchat'><body>h{n}</body></message>"
        ))
        .await;
        a.wait_for(&format!("<body>h{n}</body>")).await;
    }
    a.send(&format!("<presence to='{ROOM}/alice' type='unavailable'/>"))
        .await;
    a.wait_for("type='unavailable'").await;
    d.wait_log("room stopped", 1);

    // restored from storage: the newest three, stamped, before the subject
    let mut b = login(&d, "bob").await;
    join(&mut b, ROOM, "bob").await;
    let (bodies, _) = history_then_subject(&mut b).await;
    assert_eq!(bodies, ["h2", "h3", "h4"]);

    // many subject changes by the owner: each is saved before the room goes on
    join(&mut a, ROOM, "alice").await;
    history_then_subject(&mut a).await;
    let burst: String = (1..=40)
        .map(|n| {
            format!(
                "<message to='{ROOM}' type='groupchat'><subject>Subject {n}.</subject></message>"
            )
        })
        .collect();
    a.send(&burst).await;
    a.wait_for("Subject 40.").await;

    // the history cannot be stored for a while: h5 is reflected, its write fails
    let postgres = d.pg.is_some();
    if postgres {
        d.sql("CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'held'; END $$; CREATE TRIGGER hold BEFORE INSERT ON room_history FOR EACH ROW EXECUTE FUNCTION hold();");
    } else {
        d.sql("CREATE TRIGGER hold BEFORE INSERT ON room_history BEGIN SELECT RAISE(ABORT, 'held'); END;");
    }
    b.send(&format!(
        "<message to='{ROOM}' type='groupchat'><body>h5</body></message>"
    ))
    .await;
    b.wait_for("<body>h5</body>").await;
    d.wait_log("room history not saved", 1);
    // everyone leaves: the room tries to store h5 before it stops, fails, and stays
    for (r, nick) in [(&mut a, "alice"), (&mut b, "bob")] {
        r.send(&format!(
            "<presence to='{ROOM}/{nick}' type='unavailable'/>"
        ))
        .await;
        r.wait_for("type='unavailable'").await;
    }
    d.wait_log("room kept", 1);
    assert_eq!(d.log().matches("room stopped").count(), 1);
    // storage works again; SIGTERM comes before the room tries again (idle_timeout),
    // with no connection left to wait for
    drop((a, b));
    if postgres {
        d.sql("DROP TRIGGER hold ON room_history; DROP FUNCTION hold();");
    } else {
        d.sql("DROP TRIGGER hold;");
    }
    let st = d.terminate();
    assert!(st.success(), "{st:?}");
    d.spawn();

    let mut c = login(&d, "carol").await;
    join(&mut c, ROOM, "carol").await;
    let (bodies, subject) = history_then_subject(&mut c).await;
    assert_eq!(bodies, ["h3", "h4", "h5"]);
    assert!(subject.contains("Subject 40."), "{subject}");
}

/// A join that reaches a room while it stores its history before an idle stop is
/// answered, and sees that history: the room lets go of its JID only once the history
/// is stored, and routes what is still in its mailbox again (a new actor restores the
/// room and answers). SQLite: the test holds the database's write lock to keep the
/// room's last write waiting.
#[tokio::test]
async fn a_join_while_an_idle_room_stores_its_history_is_answered() {
    let d = Daemon::with(Options {
        extra: "[muc]\nidle_timeout = 1\nmessages_per_minute = 1000\n".into(),
        ..opts()
    });
    if d.pg.is_some() {
        // holds SQLite's write lock; the PostgreSQL run has nothing to hold here
        return;
    }
    let mut a = login(&d, "alice").await;
    let mut b = login(&d, "bob").await;
    join(&mut a, ROOM, "alice").await;
    a.send(&format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>")).await;
    assert!(a.wait_for("id='cfg'").await.contains("type='result'"));
    // h1's history write fails, so the room still has it to store when it stops
    d.sql(
        "CREATE TRIGGER hold BEFORE INSERT ON room_history BEGIN SELECT RAISE(ABORT, 'held'); END;",
    );
    a.send(&format!(
        "<message to='{ROOM}' type='groupchat'><body>h1</body></message>"
    ))
    .await;
    a.wait_for("<body>h1</body>").await;
    d.wait_log("room history not saved", 1);
    a.send(&format!("<presence to='{ROOM}/alice' type='unavailable'/>"))
        .await;
    a.wait_for("type='unavailable'").await;
    d.sql("DROP TRIGGER hold;");
    // the room's last write waits for the lock; bob's join arrives meanwhile
    let lock = rusqlite::Connection::open(d.dir.path().join("data").join("xmppd.sqlite"))
        .expect("open db");
    lock.busy_timeout(std::time::Duration::from_secs(5))
        .expect("timeout");
    lock.execute_batch("BEGIN IMMEDIATE;").expect("lock");
    // the idle room starts its last write, which waits for the lock
    d.wait_log("room idle: storing", 1);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    b.send(&format!(
        "<presence to='{ROOM}/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    lock.execute_batch("COMMIT;").expect("unlock");
    let me = b.wait_for(&format!("from='{ROOM}/bob'")).await;
    assert!(!me.contains("type='error'"), "{me}");
    let (bodies, _) = history_then_subject(&mut b).await;
    assert_eq!(bodies, ["h1"]);
    d.wait_log("room stopped", 1);
}

/// What a sender may not put in a room's message is gone from the reflection (a
/// delay stamp, a stanza id in the room's name), and an owner's admin grants do not
/// let the room past `muc.max_occupants`.
#[tokio::test]
async fn reflections_drop_forged_stamps_and_grants_do_not_pass_the_cap() {
    let d = Daemon::with(Options {
        extra: "[muc]\nmax_occupants = 2\n".into(),
        ..opts()
    });
    let mut a = login(&d, "alice").await;
    join(&mut a, ROOM, "alice").await;
    instant(&mut a, ROOM).await;
    let mut b = login(&d, "bob").await;
    join(&mut b, ROOM, "bob").await;
    b.send(&format!("<message to='{ROOM}' type='groupchat' id='f1'><body>forged</body><delay xmlns='urn:xmpp:delay' from='{ROOM}' stamp='2002-09-10T23:08:25Z'/><stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='fake'/></message>")).await;
    let m = a.wait_for("<body>forged</body>").await;
    assert!(
        !m.contains("urn:xmpp:delay") && !m.contains("fake") && m.contains("occupant-id"),
        "{m}"
    );
    a.send(&format!("<iq type='set' id='ad' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='admin' jid='carol@localhost'/></query></iq>")).await;
    assert!(a.wait_for("id='ad'").await.contains("type='result'"));
    let mut c = login(&d, "carol").await;
    c.send(&format!(
        "<presence to='{ROOM}/carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    let e = c.wait_for("type='error'").await;
    assert!(e.contains("service-unavailable"), "{e}");
}

/// In a semi-anonymous room a moderator entering sees the others' JIDs; a room made
/// members-only removes whoever is not a member, with status 322.
#[tokio::test]
async fn moderators_see_jids_and_members_only_removes_outsiders() {
    let d = Daemon::with(opts());
    let mut a = login(&d, "alice").await;
    join(&mut a, ROOM, "alice").await;
    instant(&mut a, ROOM).await;
    let mut b = login(&d, "bob").await;
    join(&mut b, ROOM, "bob").await;
    let mut c = login(&d, "carol").await;
    join(&mut c, ROOM, "carol").await;
    // alice (the owner, a moderator) comes back: bob's presence carries his JID
    a.send(&format!("<presence to='{ROOM}/alice' type='unavailable'/>"))
        .await;
    a.wait_for("type='unavailable'").await;
    a.send(&format!(
        "<presence to='{ROOM}/alice'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await;
    let bob = a.wait_for(&format!("from='{ROOM}/bob'")).await;
    assert!(bob.contains("jid='bob@localhost/r'"), "{bob}");
    a.wait_for("code='110'").await;
    a.send(&format!("<iq type='set' id='mem' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@localhost'/></query></iq>")).await;
    assert!(a.wait_for("id='mem'").await.contains("type='result'"));
    a.send(&format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_membersonly'><value>1</value></field></x></query></iq>")).await;
    assert!(a.wait_for("id='cfg'").await.contains("type='result'"));
    let out = c.wait_for("code='322'").await;
    assert!(
        out.contains("type='unavailable'") && out.contains("code='110'"),
        "{out}"
    );
    let seen = b.wait_for("code='322'").await;
    assert!(seen.contains(&format!("from='{ROOM}/carol'")), "{seen}");
    // bob, a member, is still in: he gets the next message
    a.send(&format!(
        "<message to='{ROOM}' type='groupchat'><body>members now</body></message>"
    ))
    .await;
    b.wait_for("members now").await;
}

/// A destroyed persistent room is gone from storage too: after a restart it is not
/// listed, and entering it creates a new room.
#[tokio::test]
async fn a_destroyed_persistent_room_stays_gone_after_a_restart() {
    let mut d = Daemon::with(opts());
    {
        let mut a = login(&d, "alice").await;
        join(&mut a, ROOM, "alice").await;
        a.send(&format!("<iq type='set' id='cfg' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'><field var='muc#roomconfig_persistentroom'><value>1</value></field><field var='muc#roomconfig_publicroom'><value>1</value></field></x></query></iq>")).await;
        assert!(a.wait_for("id='cfg'").await.contains("type='result'"));
        a.send(&format!("<iq type='set' id='des' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy><reason>done</reason></destroy></query></iq>")).await;
        assert!(a.wait_for("id='des'").await.contains("type='result'"));
    }
    d.wait_log("room stopped", 1);
    let st = d.terminate();
    assert!(st.success(), "{st:?}");
    d.spawn();
    let mut b = login(&d, "bob").await;
    b.send("<iq type='get' id='dit' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await;
    let i = b.wait_for("id='dit'").await;
    assert!(!i.contains(ROOM), "{i}");
    let me = join(&mut b, ROOM, "bob").await;
    assert!(me.contains("code='201'"), "a new room: {me}");
}

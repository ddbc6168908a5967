//! Entering, presence, nick changes and leaving (XEP-0045 §7.1–7.2, §7.6, §7.14).

use super::*;
use crate::muc::Limits;

const A: &str = "alice@example.org/a";
const B: &str = "bob@example.org/b";
const C: &str = "carol@example.org/c";

#[test]
fn a_new_room_is_locked_for_its_owner_until_configured() {
    let mut t = T::new();
    let out = t.enter(A, "alice");
    let me = to(&out, A);
    assert_eq!(me.len(), 2, "self-presence then subject: {me:?}");
    let p = &me[0];
    assert!(p.contains(&format!("from='{ROOM}/alice'")), "{p}");
    assert!(
        p.contains("affiliation='owner'") && p.contains("role='moderator'"),
        "{p}"
    );
    assert!(p.contains("code='110'") && p.contains("code='201'"), "{p}");
    assert!(
        me[1].contains("<subject") && me[1].contains("type='groupchat'"),
        "{}",
        me[1]
    );
    assert!(t.room.locked);
    // §10.1.3: nobody else enters a locked room
    assert_eq!(err(&t.enter(B, "bob")), "item-not-found");
    // the instant room: an empty submitted form
    let r = t.send(A, "", "<iq type='set' id='i1'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>");
    assert!(to(&r, A)[0].contains("type='result'"));
    assert!(!t.room.locked);
    let out = t.enter(B, "bob");
    let bob = to(&out, B);
    // the occupant list first, the self-presence, then the subject last
    assert!(
        bob[0].contains(&format!("from='{ROOM}/alice'")) && bob[0].contains("affiliation='owner'"),
        "{bob:?}"
    );
    assert!(
        bob[1].contains(&format!("from='{ROOM}/bob'")) && bob[1].contains("code='110'"),
        "{bob:?}"
    );
    assert!(!bob[1].contains("code='201'"), "{}", bob[1]);
    assert!(bob[1].contains("affiliation='none'") && bob[1].contains("role='participant'"));
    assert!(bob.last().is_some_and(|s| s.contains("<subject")));
    let alice = to(&out, A);
    assert_eq!(alice.len(), 1);
    assert!(alice[0].contains(&format!("from='{ROOM}/bob'")) && !alice[0].contains("code='110'"));
    // semi-anonymous: the moderator sees bob's real JID, bob does not see alice's
    assert!(alice[0].contains(&format!("jid='{B}'")), "{}", alice[0]);
    assert!(!bob[0].contains("jid="), "{}", bob[0]);
}

#[test]
fn an_old_client_gets_an_instant_room() {
    let mut t = T::new();
    t.send(A, "alice", "<presence/>");
    assert!(!t.room.locked);
    assert!(
        to(&t.enter(B, "bob"), B)
            .iter()
            .any(|s| s.contains("code='110'"))
    );
}

#[test]
fn non_anonymous_rooms_show_jids_and_say_so() {
    let mut t = T::instant();
    t.configure(&[("muc#roomconfig_whois", "anyone")]);
    let out = t.enter(B, "bob");
    let bob = to(&out, B);
    assert!(bob[0].contains(&format!("jid='{A}'")), "{}", bob[0]);
    assert!(bob[1].contains("code='100'"), "{}", bob[1]);
}

#[test]
fn a_moderator_entering_a_semi_anonymous_room_sees_jids() {
    let mut t = T::instant();
    t.enter(B, "bob");
    // a participant sees nicks only (and its own JID in its self-presence)
    let carol = to(&t.enter(C, "carol"), C);
    let others: Vec<_> = carol.iter().filter(|s| !s.contains("code='110'")).collect();
    assert!(others.iter().all(|s| !s.contains("jid=")), "{carol:?}");
    // the owner (a moderator) leaves and comes back: the others' presence shows JIDs
    t.send(A, "alice", "<presence type='unavailable'/>");
    let alice = to(&t.enter(A, "alice"), A);
    for j in [B, C] {
        assert!(
            alice.iter().any(|s| s.contains(&format!("jid='{j}'"))),
            "{j}: {alice:?}"
        );
    }
}

#[test]
fn entering_needs_a_nick_and_a_free_one() {
    let mut t = T::instant();
    assert_eq!(err(&t.send(B, "", "<presence/>")), "jid-malformed");
    let e = t.enter(B, "alice");
    assert_eq!(err(&e), "conflict");
    // the error comes from the nick asked for, with the MUC element echoed
    assert!(to(&e, B)[0].contains(&format!("from='{ROOM}/alice'")));
}

#[test]
fn password_members_only_ban_and_capacity() {
    let mut t = T::with(Limits {
        max_occupants: 3,
        ..Limits::default()
    });
    t.enter(A, "alice");
    t.configure(&[
        ("muc#roomconfig_passwordprotectedroom", "1"),
        ("muc#roomconfig_roomsecret", "pw"),
        ("muc#roomconfig_maxusers", "2"),
    ]);
    assert_eq!(err(&t.enter(B, "bob")), "not-authorized");
    let wrong = "<presence><x xmlns='http://jabber.org/protocol/muc'><password>no</password></x></presence>";
    assert_eq!(err(&t.send(B, "bob", wrong)), "not-authorized");
    let right = "<presence><x xmlns='http://jabber.org/protocol/muc'><password>pw</password></x></presence>";
    assert!(
        to(&t.send(B, "bob", right), B)
            .iter()
            .any(|s| s.contains("code='110'"))
    );
    // full as its owner set it: carol waits outside, an admin does not
    assert_eq!(err(&t.send(C, "carol", right)), "service-unavailable");
    t.send(A, "", "<iq type='set' id='ad'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='admin' jid='carol@example.org'/></query></iq>");
    assert!(
        to(&t.send(C, "carol", right), C)
            .iter()
            .any(|s| s.contains("code='110'"))
    );
    // but no grant lets the room past the service's bound
    t.send(A, "", "<iq type='set' id='ad2'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='admin' jid='dave@example.org'/></query></iq>");
    assert_eq!(
        err(&t.send("dave@example.org/d", "dave", right)),
        "service-unavailable"
    );
    assert_eq!(t.room.occupants.len(), 3);

    let mut t = T::instant();
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    assert_eq!(err(&t.enter(B, "bob")), "registration-required");
    t.send(A, "", "<iq type='set' id='m'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@example.org'/></query></iq>");
    assert!(
        to(&t.enter(B, "bob"), B)
            .iter()
            .any(|s| s.contains("affiliation='member'"))
    );

    let mut t = T::instant();
    t.send(A, "", "<iq type='set' id='b'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast' jid='bob@example.org'/></query></iq>");
    assert_eq!(err(&t.enter(B, "bob")), "forbidden");
    assert_eq!(err(&t.enter("bob@example.org/other", "bobby")), "forbidden");
}

#[test]
fn several_resources_share_a_nick() {
    let mut t = T::instant();
    t.enter(B, "bob");
    let b2 = "bob@example.org/phone";
    let out = t.enter(b2, "bob");
    // the new session gets the room; nobody else hears of it
    assert!(to(&out, b2).iter().any(|s| s.contains("code='110'")));
    assert!(to(&out, A).is_empty() && to(&out, B).is_empty(), "{out:?}");
    let m = t.send(A, "", "<message type='groupchat'><body>hi</body></message>");
    assert_eq!(to(&m, B).len(), 1);
    assert_eq!(to(&m, b2).len(), 1);
    // a private message reaches both
    let pm = t.send(A, "bob", "<message type='chat'><body>psst</body></message>");
    assert_eq!((to(&pm, B).len(), to(&pm, b2).len()), (1, 1));
    // one leaves: only it is told, bob stays
    let out = t.send(b2, "bob", "<presence type='unavailable'/>");
    assert_eq!(all(&out).len(), 1);
    assert!(to(&out, b2)[0].contains("type='unavailable'"));
    assert!(t.room.occupants.by_nick("bob").is_some());
    // another user may not take bob's nick by joining with it
    assert_eq!(err(&t.enter(C, "bob")), "conflict");
}

#[test]
fn nick_change_is_303_then_the_new_presence() {
    let mut t = T::instant();
    t.enter(B, "bob");
    let out = t.send(B, "robert", "<presence/>");
    let a = to(&out, A);
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(a[0].contains(&format!("from='{ROOM}/bob'")) && a[0].contains("type='unavailable'"));
    assert!(
        a[0].contains("nick='robert'") && a[0].contains("code='303'"),
        "{}",
        a[0]
    );
    assert!(a[1].contains(&format!("from='{ROOM}/robert'")) && !a[1].contains("unavailable"));
    let b = to(&out, B);
    assert!(b[0].contains("code='303'") && b[0].contains("code='110'"));
    assert!(b[1].contains("code='110'"));
    // to a nick in use: conflict, nothing changes
    assert_eq!(err(&t.send(B, "alice", "<presence/>")), "conflict");
    assert!(t.room.occupants.by_nick("robert").is_some());
}

#[test]
fn presence_updates_are_broadcast_and_leaving_empties_the_room() {
    let mut t = T::instant();
    t.enter(B, "bob");
    let out = t.send(
        B,
        "bob",
        "<presence><show>away</show><status>lunch</status></presence>",
    );
    assert!(to(&out, A)[0].contains("<show>away</show>"));
    let out = t.send(
        B,
        "bob",
        "<presence type='unavailable'><status>bye</status></presence>",
    );
    let a = to(&out, A);
    assert!(
        a[0].contains("type='unavailable'") && a[0].contains("role='none'") && a[0].contains("bye")
    );
    assert!(to(&out, B)[0].contains("code='110'"));
    assert!(!out.contains(&Effect::Empty));
    let out = t.send(A, "alice", "<presence type='unavailable'/>");
    assert!(out.contains(&Effect::Empty));
    assert!(t.room.occupants.is_empty());
}

#[test]
fn a_presence_error_from_an_occupant_removes_it() {
    let mut t = T::instant();
    t.enter(B, "bob");
    let out = t.send(B, "bob", "<presence type='error'><error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>");
    assert!(to(&out, A)[0].contains("code='333'"));
    assert!(t.room.occupants.by_nick("bob").is_none());
}

#[test]
fn history_then_subject_with_the_limits_asked_for() {
    let mut t = T::instant();
    for n in 0..3 {
        t.send(
            A,
            "",
            &format!("<message type='groupchat'><body>m{n}</body></message>"),
        );
    }
    t.send(
        A,
        "",
        "<message type='groupchat'><subject>Topic</subject></message>",
    );
    let out = t.enter(B, "bob");
    let b = to(&out, B);
    let bodies: Vec<&String> = b.iter().filter(|s| s.contains("<body>")).collect();
    assert_eq!(bodies.len(), 3);
    assert!(
        bodies[0].contains("m0")
            && bodies[0].contains("urn:xmpp:delay")
            && bodies[0].contains(&format!("from='{ROOM}'"))
    );
    let last = b.last().expect("subject");
    assert!(
        last.contains("<subject>Topic</subject>") && last.contains(&format!("from='{ROOM}/alice'")),
        "{last}"
    );
    let out = t.send(C, "carol", "<presence><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='1'/></x></presence>");
    let bodies: Vec<String> = to(&out, C)
        .into_iter()
        .filter(|s| s.contains("<body>"))
        .collect();
    assert_eq!(bodies.len(), 1);
    assert!(bodies[0].contains("m2"));
    let out = t.send("dave@example.org/d", "dave", "<presence><x xmlns='http://jabber.org/protocol/muc'><history maxchars='0'/></x></presence>");
    assert!(
        !to(&out, "dave@example.org/d")
            .iter()
            .any(|s| s.contains("<body>"))
    );
}

#[test]
fn occupant_ids_are_stable_per_user_and_distinct() {
    let mut t = T::instant();
    let id = |out: &[Effect], who: &str| -> String {
        let s = to(out, who)
            .into_iter()
            .find(|s| s.contains("code='110'"))
            .expect("self");
        s.split("<occupant-id")
            .nth(1)
            .and_then(|r| r.split(" id='").nth(1))
            .and_then(|r| r.split('\'').next())
            .expect("id")
            .to_string()
    };
    let first = id(&t.enter(B, "bob"), B);
    t.send(B, "bob", "<presence type='unavailable'/>");
    let again = id(
        &t.enter("bob@example.org/other", "bobby"),
        "bob@example.org/other",
    );
    assert_eq!(first, again);
    let carol = id(&t.enter(C, "carol"), C);
    assert_ne!(first, carol);
}

#[test]
fn presence_floods_are_refused_and_leaving_does_not_reset_the_rate() {
    let mut t = T::with(Limits {
        presences_per_minute: 4,
        ..Limits::default()
    });
    // alice makes an instant room and stays; bob floods
    t.enter(A, "alice");
    t.send(
        A,
        "",
        "<iq type='set' id='c1'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>",
    );
    t.enter(B, "bob"); // 1
    t.send(B, "bob", "<presence><show>away</show></presence>"); // 2
    t.send(B, "bob2", "<presence/>"); // 3: a nick change
    assert!(t.room.occupants.by_nick("bob2").is_some());
    t.send(B, "bob2", "<presence type='unavailable'/>"); // leaving is not counted
    assert!(t.room.occupants.by_nick("bob2").is_none());
    t.enter(B, "bob"); // 4: re-joining does not start a new window
    assert!(t.room.occupants.by_nick("bob").is_some());
    assert_eq!(
        err(&t.send(B, "bob", "<presence><show>dnd</show></presence>")),
        "resource-constraint"
    );
    assert_eq!(
        err(&t.send(B, "bob3", "<presence/>")),
        "resource-constraint"
    );
    t.send(B, "bob", "<presence type='unavailable'/>");
    assert_eq!(err(&t.enter(B, "bob")), "resource-constraint");
    assert!(t.room.occupants.by_nick("bob").is_none());
    // alice is not affected, and a minute later bob may enter again
    assert!(!all(&t.send(A, "alice", "<presence><show>away</show></presence>")).is_empty());
    t.now += 60_000;
    assert!(
        all(&t.enter(B, "bob"))
            .iter()
            .any(|s| s.contains("code='110'"))
    );
}

#[test]
fn the_rate_table_is_bounded() {
    let mut r = crate::muc::occupants::Rates::default();
    let counted = crate::muc::occupants::Counted::Presence;
    for i in 0..crate::muc::occupants::MAX_RATES + 50 {
        let j = xmpp_parsers::jid::BareJid::new(&format!("u{i}@example.net")).expect("jid");
        assert!(r.allow(&j, counted, 1_000, 1));
    }
    assert_eq!(r.len(), crate::muc::occupants::MAX_RATES);
}

//! Moderation, affiliations, configuration, destruction, disco and self-ping
//! (XEP-0045 §8–§10, XEP-0410).

use super::*;
use crate::muc::room::Saved;

const A: &str = "alice@example.org/a";
const B: &str = "bob@example.org/b";
const C: &str = "carol@example.org/c";

fn three() -> T {
    let mut t = T::instant();
    t.enter(B, "bob");
    t.enter(C, "carol");
    t
}

fn admin(t: &mut T, from: &str, items: &str) -> Vec<Effect> {
    t.send(from, "", &format!("<iq type='set' id='ad'><query xmlns='http://jabber.org/protocol/muc#admin'>{items}</query></iq>"))
}

#[test]
fn moderators_kick_with_307_and_cannot_kick_admins() {
    let mut t = three();
    let out = admin(
        &mut t,
        A,
        "<item nick='carol' role='none'><reason>spam</reason></item>",
    );
    assert!(to(&out, A)[0].contains("type='result'"));
    let c = to(&out, C);
    assert!(
        c[0].contains("type='unavailable'")
            && c[0].contains("code='307'")
            && c[0].contains("code='110'")
    );
    assert!(
        c[0].contains("<actor nick='alice'/>") && c[0].contains("spam"),
        "{}",
        c[0]
    );
    assert!(to(&out, B)[0].contains("code='307'"));
    assert!(t.room.occupants.by_nick("carol").is_none());
    // a participant cannot kick; nobody kicks the owner
    assert_eq!(
        err(&admin(&mut t, B, "<item nick='alice' role='none'/>")),
        "forbidden"
    );
    admin(&mut t, A, "<item nick='bob' role='moderator'/>");
    assert_eq!(
        err(&admin(&mut t, B, "<item nick='alice' role='none'/>")),
        "not-allowed"
    );
    assert_eq!(
        err(&admin(&mut t, A, "<item nick='ghost' role='none'/>")),
        "item-not-found"
    );
}

#[test]
fn voice_is_revoked_and_granted() {
    let mut t = three();
    let out = admin(&mut t, A, "<item nick='bob' role='visitor'/>");
    assert!(to(&out, C)[0].contains("role='visitor'"));
    assert_eq!(
        err(&t.send(B, "", "<message type='groupchat'><body>x</body></message>")),
        "forbidden"
    );
    admin(&mut t, A, "<item nick='bob' role='participant'/>");
    assert_eq!(
        all(&t.send(B, "", "<message type='groupchat'><body>x</body></message>")).len(),
        3
    );
}

#[test]
fn bans_and_the_affiliation_lists() {
    let mut t = three();
    let out = admin(
        &mut t,
        A,
        "<item affiliation='outcast' jid='carol@example.org'><reason>troll</reason></item>",
    );
    assert!(
        to(&out, C)[0].contains("code='301'") && to(&out, C)[0].contains("affiliation='outcast'")
    );
    assert!(t.room.occupants.by_nick("carol").is_none());
    assert_eq!(err(&t.enter(C, "carol")), "forbidden");
    let list = t.send(A, "", "<iq type='get' id='l'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query></iq>");
    assert!(
        to(&list, A)[0].contains("jid='carol@example.org'"),
        "{list:?}"
    );
    assert_eq!(err(&t.send(B, "", "<iq type='get' id='l'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast'/></query></iq>")), "forbidden");
    // unban
    admin(
        &mut t,
        A,
        "<item affiliation='none' jid='carol@example.org'/>",
    );
    assert!(
        to(&t.enter(C, "carol"), C)
            .iter()
            .any(|s| s.contains("code='110'"))
    );
    let roles = t.send(A, "", "<iq type='get' id='r'><query xmlns='http://jabber.org/protocol/muc#admin'><item role='participant'/></query></iq>");
    let r = &to(&roles, A)[0];
    assert!(
        r.contains("nick='bob'") && r.contains("nick='carol'") && !r.contains("nick='alice'"),
        "{r}"
    );
}

#[test]
fn admins_and_owners_and_the_last_owner() {
    let mut t = three();
    let out = admin(
        &mut t,
        A,
        "<item affiliation='admin' jid='bob@example.org'/>",
    );
    assert!(
        to(&out, C)[0].contains("affiliation='admin'")
            && to(&out, C)[0].contains("role='moderator'")
    );
    // an admin cannot touch owners or make admins
    assert_eq!(
        err(&admin(
            &mut t,
            B,
            "<item affiliation='none' jid='alice@example.org'/>"
        )),
        "not-allowed"
    );
    assert_eq!(
        err(&admin(
            &mut t,
            B,
            "<item affiliation='admin' jid='carol@example.org'/>"
        )),
        "not-allowed"
    );
    assert!(
        to(
            &admin(
                &mut t,
                B,
                "<item affiliation='member' jid='carol@example.org'/>"
            ),
            B
        )[0]
        .contains("type='result'")
    );
    // a participant changes nothing
    assert_eq!(
        err(&admin(
            &mut t,
            C,
            "<item affiliation='member' jid='dave@example.org'/>"
        )),
        "forbidden"
    );
    // the only owner cannot leave ownership
    assert_eq!(
        err(&admin(
            &mut t,
            A,
            "<item affiliation='member' jid='alice@example.org'/>"
        )),
        "conflict"
    );
    admin(
        &mut t,
        A,
        "<item affiliation='owner' jid='bob@example.org'/>",
    );
    assert!(
        to(
            &admin(
                &mut t,
                A,
                "<item affiliation='member' jid='alice@example.org'/>"
            ),
            A
        )[0]
        .contains("type='result'")
    );
    assert_eq!(
        err(&admin(&mut t, A, "<item affiliation='king' jid='x@y'/>")),
        "bad-request"
    );
}

#[test]
fn losing_membership_of_a_members_only_room_removes_with_321() {
    let mut t = T::instant();
    admin(
        &mut t,
        A,
        "<item affiliation='member' jid='bob@example.org'/>",
    );
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    t.enter(B, "bob");
    let out = admin(
        &mut t,
        A,
        "<item affiliation='none' jid='bob@example.org'/>",
    );
    assert!(to(&out, B)[0].contains("code='321'"));
    assert!(t.room.occupants.by_nick("bob").is_none());
}

#[test]
fn owners_configure_with_the_form() {
    let mut t = three();
    let get = "<iq type='get' id='f'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>";
    let f = &to(&t.send(A, "", get), A)[0];
    assert!(
        f.contains("muc#roomconfig_persistentroom") && f.contains("jabber:x:data"),
        "{f}"
    );
    assert_eq!(err(&t.send(B, "", get)), "forbidden");
    let out = t.configure(&[
        ("muc#roomconfig_persistentroom", "1"),
        ("muc#roomconfig_roomname", "The Lounge"),
    ]);
    assert!(out.contains(&Effect::Save));
    assert!(
        to(&out, B).iter().any(|s| s.contains("code='104'")),
        "occupants hear of it: {out:?}"
    );
    assert_eq!(t.room.config.name, "The Lounge");
    assert_eq!(
        err(&t.configure(&[("muc#roomconfig_maxusers", "lots")])),
        "not-acceptable"
    );
    let out = t.configure(&[("muc#roomconfig_persistentroom", "0")]);
    assert!(out.contains(&Effect::Delete));
    // disco reflects the configuration
    let info = t.send(
        B,
        "",
        "<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    let i = &to(&info, B)[0];
    assert!(i.contains("category='conference'") && i.contains("name='The Lounge'"));
    assert!(
        i.contains("muc_temporary")
            && i.contains("muc_semianonymous")
            && i.contains("urn:xmpp:occupant-id:0")
    );
}

#[test]
fn cancelling_the_first_configuration_destroys_the_room() {
    let mut t = T::new();
    t.enter(A, "alice");
    let out = t.send(A, "", "<iq type='set' id='c'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='cancel'/></query></iq>");
    assert!(out.contains(&Effect::Empty));
    assert!(t.room.destroyed);
}

#[test]
fn destroy_sends_everyone_the_alternate_venue() {
    let mut t = three();
    let d = "<iq type='set' id='x'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='new@conference.example.org'><reason>moved</reason></destroy></query></iq>";
    assert_eq!(err(&t.send(B, "", d)), "forbidden");
    let out = t.send(A, "", d);
    for who in [A, B, C] {
        let p = to(&out, who)
            .into_iter()
            .find(|s| s.contains("<presence"))
            .expect("presence");
        assert!(
            p.contains("type='unavailable'")
                && p.contains("<destroy jid='new@conference.example.org'>")
                && p.contains("moved"),
            "{p}"
        );
    }
    assert!(out.contains(&Effect::Delete) && out.contains(&Effect::Empty));
    assert_eq!(err(&t.enter(B, "bob")), "item-not-found");
}

#[test]
fn self_ping_and_iq_between_occupants() {
    let mut t = three();
    let ping = "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>";
    assert!(to(&t.send(B, "bob", ping), B)[0].contains("type='result'"));
    assert_eq!(
        err(&t.send("eve@example.org/e", "bob", ping)),
        "not-acceptable"
    );
    // to another occupant it is passed on from the sender's room JID
    let out = t.send(B, "carol", ping);
    let c = to(&out, C);
    assert!(c[0].contains(&format!("from='{ROOM}/bob'")) && c[0].contains("urn:xmpp:ping"));
    let back = t.send(C, "bob", "<iq type='result' id='p'/>");
    assert!(to(&back, B)[0].contains(&format!("from='{ROOM}/carol'")));
    assert!(to(&t.send(B, "", ping), B)[0].contains("type='result'"));
}

#[test]
fn saved_rooms_come_back_with_config_affiliations_and_subject() {
    let mut t = three();
    admin(
        &mut t,
        A,
        "<item affiliation='outcast' jid='eve@example.org'/>",
    );
    t.configure(&[("muc#roomconfig_persistentroom", "1")]);
    t.send(
        A,
        "",
        "<message type='groupchat'><subject>Kept</subject></message>",
    );
    let saved: Saved = t.room.saved();
    let id = t
        .room
        .occupant_id(&BareJid::new("bob@example.org").expect("jid"));
    let back = Room::restore(t.room.jid.clone(), saved.clone(), Limits::default());
    assert_eq!(back.saved(), saved);
    assert!(back.config.persistent && !back.fresh && !back.locked);
    assert_eq!(back.subject, "Kept");
    assert_eq!(
        back.occupant_id(&BareJid::new("bob@example.org").expect("jid")),
        id
    );
    let mut t2 = T {
        room: back,
        now: t.now,
    };
    assert_eq!(err(&t2.enter("eve@example.org/e", "eve")), "forbidden");
    // the first to enter a restored room is not its owner
    assert!(
        to(&t2.enter(C, "carol"), C)
            .iter()
            .any(|s| s.contains("affiliation='none'"))
    );
}

#[test]
fn the_creator_is_kept_in_the_saved_room() {
    let t = T::instant();
    let saved = t.room.saved();
    assert_eq!(saved.creator.as_deref(), Some("alice@example.org"));
    let back = Room::restore(t.room.jid.clone(), saved, Limits::default());
    assert_eq!(
        back.creator.as_ref().map(|c| c.as_str()),
        Some("alice@example.org")
    );
}

#[test]
fn only_local_users_create_rooms_unless_configured_otherwise() {
    let mut s = crate::config::Settings {
        domains: vec![crate::config::DomainSettings {
            name: "example.org".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let local = BareJid::new("alice@Example.org").expect("jid");
    let remote = BareJid::new("mallory@elsewhere.example").expect("jid");
    assert!(crate::muc::may_create(&s, &local));
    assert!(!crate::muc::may_create(&s, &remote));
    s.muc.local_creators_only = false;
    assert!(crate::muc::may_create(&s, &remote));
}

#[test]
fn becoming_members_only_removes_who_is_not_a_member() {
    let mut t = three();
    admin(
        &mut t,
        A,
        "<item affiliation='member' jid='bob@example.org'/>",
    );
    let out = t.configure(&[("muc#roomconfig_membersonly", "1")]);
    // carol is out, with 322, and everyone hears it; bob (a member) and alice stay
    let carol = to(&out, C);
    assert!(
        carol.iter().any(|s| s.contains("type='unavailable'")
            && s.contains("code='322'")
            && s.contains("code='110'")),
        "{carol:?}"
    );
    let gone = to(&out, B)
        .into_iter()
        .find(|s| s.contains("type='unavailable'"))
        .expect("bob hears it");
    assert!(gone.contains(&format!("from='{ROOM}/carol'")) && gone.contains("code='322'"));
    assert_eq!(t.room.occupants.len(), 2);
    assert!(t.room.occupants.by_nick("carol").is_none());
    // already members-only: a new submit removes nobody
    t.enter(C, "carol");
    assert_eq!(t.room.occupants.len(), 2, "carol may not come back");
    let out = t.configure(&[("muc#roomconfig_roomname", "x")]);
    assert!(all(&out).iter().all(|s| !s.contains("code='322'")));
}

#[test]
fn a_change_of_anonymity_is_announced_with_172_or_173() {
    let mut t = T::instant();
    t.enter(B, "bob");
    let out = t.configure(&[("muc#roomconfig_whois", "anyone")]);
    let bob = to(&out, B);
    let note = bob.iter().find(|s| s.contains("code='104'")).expect("104");
    assert!(
        note.contains("code='172'") && !note.contains("code='173'"),
        "{note}"
    );
    let out = t.configure(&[("muc#roomconfig_whois", "moderators")]);
    let note = to(&out, B)
        .into_iter()
        .find(|s| s.contains("code='104'"))
        .expect("104");
    assert!(
        note.contains("code='173'") && !note.contains("code='172'"),
        "{note}"
    );
    // no change of anonymity: 104 alone
    let out = t.configure(&[("muc#roomconfig_roomname", "x")]);
    let note = to(&out, B)
        .into_iter()
        .find(|s| s.contains("code='104'"))
        .expect("104");
    assert!(
        !note.contains("code='172'") && !note.contains("code='173'"),
        "{note}"
    );
}

#[test]
fn a_new_moderator_of_a_semi_anonymous_room_is_sent_the_real_jids() {
    let mut t = T::instant();
    t.enter(B, "bob");
    t.enter(C, "carol");
    let out = admin(&mut t, A, "<item nick='bob' role='moderator'/>");
    let bob = to(&out, B);
    for (j, nick) in [(A, "alice"), (C, "carol")] {
        assert!(
            bob.iter()
                .any(|s| s.contains(&format!("/{nick}'")) && s.contains(&format!("jid='{j}'"))),
            "{bob:?}"
        );
    }
    // carol, a participant, still sees no JIDs
    assert!(
        to(&out, C).iter().all(|s| !s.contains("jid=")),
        "{:?}",
        to(&out, C)
    );
}

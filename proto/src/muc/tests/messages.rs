//! Groupchat, private messages, subjects, invitations (XEP-0045 §7.4–7.5, §7.8, §8.1).

use super::*;
use crate::muc::Limits;

const A: &str = "alice@example.org/a";
const B: &str = "bob@example.org/b";
const C: &str = "carol@example.org/c";

fn three() -> T {
    let mut t = T::instant();
    t.enter(B, "bob");
    t.enter(C, "carol");
    t
}

#[test]
fn groupchat_goes_to_everyone_with_the_senders_reflection() {
    let mut t = three();
    let out = t.send(B, "", "<message type='groupchat' id='g1'><body>hello</body><occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>");
    assert_eq!(out.len(), 1, "one fan-out: {out:?}");
    let Effect::Fanout {
        stanza,
        to: targets,
    } = &out[0]
    else {
        panic!("not a fan-out: {out:?}")
    };
    assert_eq!(targets.len(), 3);
    assert_eq!(stanza.attr("to"), None);
    let s = to_string(stanza);
    assert!(
        s.contains(&format!("from='{ROOM}/bob'"))
            && s.contains("id='g1'")
            && s.contains("<body>hello</body>")
    );
    // XEP-0421: the sender's own occupant-id is dropped, the room's added
    assert!(!s.contains("forged"), "{s}");
    assert_eq!(s.matches("<occupant-id").count(), 1);
    assert_eq!(t.room.history.len(), 1);
}

#[test]
fn groupchat_loses_a_forged_delay_and_the_rooms_stanza_id() {
    let mut t = three();
    let out = t.send(
        B,
        "",
        &format!(
            "<message type='groupchat'><body>hi</body>\
        <delay xmlns='urn:xmpp:delay' from='{ROOM}' stamp='2002-09-10T23:08:25Z'/>\
        <x xmlns='jabber:x:delay' stamp='20020910T23:08:25'/>\
        <stanza-id xmlns='urn:xmpp:sid:0' by='{}' id='forged'/>\
        <stanza-id xmlns='urn:xmpp:sid:0' by='bob@example.org' id='own'/>\
        <origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>",
            ROOM.to_uppercase()
        ),
    );
    let Some(Effect::Fanout { stanza, .. }) = out.first() else {
        panic!("not a fan-out: {out:?}")
    };
    let s = to_string(stanza);
    assert!(!s.contains("delay") && !s.contains("forged"), "{s}");
    // what others may add stays: a stanza id by someone else, the origin id
    assert!(
        s.contains("id='own'") && s.contains("id='o1'") && s.contains("<body>hi</body>"),
        "{s}"
    );
    // the history copy carries the room's own stamp only
    let h = t.room.history.select(&Default::default(), t.now / 1000);
    let hs = to_string(h[0]);
    assert_eq!(hs.matches("urn:xmpp:delay").count(), 1, "{hs}");
    assert!(
        hs.contains(&format!("from='{ROOM}'")) && !hs.contains("2002-09-10"),
        "{hs}"
    );
}

#[test]
fn only_occupants_with_voice_speak() {
    let mut t = three();
    assert_eq!(
        err(&t.send(
            "eve@example.org/e",
            "",
            "<message type='groupchat'><body>x</body></message>"
        )),
        "not-acceptable"
    );
    t.configure(&[("muc#roomconfig_moderatedroom", "1")]);
    // already joined participants keep their role; a newcomer is a visitor
    t.enter("dave@example.org/d", "dave");
    assert_eq!(
        err(&t.send(
            "dave@example.org/d",
            "",
            "<message type='groupchat'><body>x</body></message>"
        )),
        "forbidden"
    );
    // a chat-type message to the room itself is refused
    assert_eq!(
        err(&t.send(B, "", "<message type='chat'><body>x</body></message>")),
        "bad-request"
    );
}

#[test]
fn subject_changes_by_those_allowed() {
    let mut t = three();
    let out = t.send(
        B,
        "",
        "<message type='groupchat'><subject>News</subject></message>",
    );
    assert_eq!(all(&out).len(), 3);
    assert_eq!(t.room.subject, "News");
    assert_eq!(t.room.history.len(), 0, "a subject is not history");
    t.configure(&[("muc#roomconfig_changesubject", "0")]);
    assert_eq!(
        err(&t.send(
            B,
            "",
            "<message type='groupchat'><subject>Mine</subject></message>"
        )),
        "forbidden"
    );
    // moderators still may
    assert_eq!(
        all(&t.send(
            A,
            "",
            "<message type='groupchat'><subject>Owner's</subject></message>"
        ))
        .len(),
        3
    );
    assert_eq!(t.room.subject, "Owner's");
}

#[test]
fn private_messages_between_occupants() {
    let mut t = three();
    let out = t.send(
        B,
        "carol",
        "<message type='chat'><body>psst</body></message>",
    );
    let c = to(&out, C);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].contains(&format!("from='{ROOM}/bob'"))
            && c[0].contains("http://jabber.org/protocol/muc#user")
    );
    assert!(to(&out, A).is_empty());
    assert_eq!(
        err(&t.send(B, "nobody", "<message type='chat'><body>x</body></message>")),
        "item-not-found"
    );
    assert_eq!(
        err(&t.send(
            B,
            "carol",
            "<message type='groupchat'><body>x</body></message>"
        )),
        "bad-request"
    );
    assert_eq!(
        err(&t.send(
            "eve@example.org/e",
            "carol",
            "<message type='chat'><body>x</body></message>"
        )),
        "not-acceptable"
    );
    t.configure(&[("muc#roomconfig_allowpm", "none")]);
    assert_eq!(
        err(&t.send(B, "carol", "<message type='chat'><body>x</body></message>")),
        "forbidden"
    );
}

#[test]
fn flooding_is_refused_past_the_rate() {
    let mut t = T::with(Limits {
        messages_per_minute: 2,
        ..Limits::default()
    });
    t.send(A, "alice", "<presence/>");
    t.send(A, "", "<message type='groupchat'><body>1</body></message>");
    t.send(A, "", "<message type='groupchat'><body>2</body></message>");
    assert_eq!(
        err(&t.send(A, "", "<message type='groupchat'><body>3</body></message>")),
        "resource-constraint"
    );
    t.now += 60_000;
    assert_eq!(
        all(&t.send(A, "", "<message type='groupchat'><body>4</body></message>")).len(),
        1
    );
}

#[test]
fn mediated_invitations_and_declines() {
    let mut t = three();
    let out = t.send(B, "", "<message><x xmlns='http://jabber.org/protocol/muc#user'><invite to='dave@example.org'><reason>join us</reason></invite></x></message>");
    let d = to(&out, "dave@example.org");
    assert_eq!(d.len(), 1);
    assert!(
        d[0].contains(&format!("from='{ROOM}'"))
            && d[0].contains(&format!("<invite from='{B}'>"))
            && d[0].contains("join us"),
        "{}",
        d[0]
    );
    let out = t.send("dave@example.org/d", "", "<message><x xmlns='http://jabber.org/protocol/muc#user'><decline to='bob@example.org/b'><reason>busy</reason></decline></x></message>");
    let b = to(&out, B);
    assert!(
        b[0].contains("<decline from='dave@example.org'>") && b[0].contains("busy"),
        "{}",
        b[0]
    );
    assert_eq!(err(&t.send("eve@example.org/e", "", "<message><x xmlns='http://jabber.org/protocol/muc#user'><invite to='x@y'/></x></message>")), "not-acceptable");
    // members-only: participants may not invite unless allowed; an owner's invitee becomes a member
    // (bob is made a member first: a room made members-only removes non-members)
    t.send(A, "", "<iq type='set' id='m'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@example.org'/></query></iq>");
    t.configure(&[("muc#roomconfig_membersonly", "1")]);
    assert_eq!(err(&t.send(B, "", "<message><x xmlns='http://jabber.org/protocol/muc#user'><invite to='frank@example.org'/></x></message>")), "forbidden");
    let out = t.send(A, "", "<message><x xmlns='http://jabber.org/protocol/muc#user'><invite to='frank@example.org'/></x></message>");
    assert_eq!(to(&out, "frank@example.org").len(), 1);
    // (the room is not persistent here, so nothing is saved: the affiliation is the proof)
    let frank = xmpp_parsers::jid::BareJid::new("frank@example.org").expect("jid");
    assert_eq!(
        t.room.affiliation(&frank),
        crate::muc::roles::Affiliation::Member
    );
    assert!(
        to(
            &t.enter("frank@example.org/f", "frank"),
            "frank@example.org/f"
        )
        .iter()
        .any(|s| s.contains("affiliation='member'"))
    );
}

#[test]
fn an_occupant_that_cannot_be_reached_is_removed_with_333() {
    let mut t = three();
    // an error to the room that does not say the session is gone changes nothing
    let refused = "<message type='error'><error type='cancel'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>";
    assert!(t.send(C, "", refused).is_empty());
    assert!(t.room.occupants.by_nick("carol").is_some());
    // a bounce saying the session is gone removes it
    let gone = "<message type='error'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>";
    let out = t.send(C, "", gone);
    assert!(to(&out, A)[0].contains("code='333'"));
    assert!(t.room.occupants.by_nick("carol").is_none());
    // from a stranger: nothing
    assert!(t.send("eve@example.org/e", "", gone).is_empty());
}

#[test]
fn a_refused_private_message_goes_back_to_its_sender_and_no_one_is_removed() {
    let mut t = three();
    // carol's client refuses bob's private message with service-unavailable (the usual
    // refusal): bob learns of it, from carol's room JID; carol stays
    let refused = "<message type='error' id='pm1'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>";
    let out = t.send(C, "bob", refused);
    let bob = to(&out, B);
    assert_eq!(bob.len(), 1, "{out:?}");
    assert!(bob[0].contains("type='error'"), "{bob:?}");
    assert!(bob[0].contains("service-unavailable"), "{bob:?}");
    assert!(
        bob[0].contains("from='lounge@conference.example.org/carol'"),
        "{bob:?}"
    );
    assert!(!bob[0].contains(C), "carol's real JID leaks: {bob:?}");
    assert!(to(&out, A).is_empty() && to(&out, C).is_empty(), "{out:?}");
    assert!(t.room.occupants.by_nick("carol").is_some());
    // to a nick no one has, or from a stranger: nothing, and no one removed
    assert!(t.send(C, "nobody", refused).is_empty());
    assert!(t.send("eve@example.org/e", "bob", refused).is_empty());
    assert!(t.room.occupants.by_nick("bob").is_some());
}

#[test]
fn invitation_spam_is_bounded() {
    let inv = |n: usize| {
        let mut x = String::from("<message><x xmlns='http://jabber.org/protocol/muc#user'>");
        for i in 0..n {
            x.push_str(&format!("<invite to='u{i}@example.net'/>"));
        }
        x.push_str("</x></message>");
        x
    };
    let mut t = three();
    // more invitees than one message may carry
    assert_eq!(
        err(&t.send(B, "", &inv(crate::muc::messages::MAX_INVITEES + 1))),
        "not-acceptable"
    );
    assert!(t.room.invitations.is_empty());
    // each invitee counts against the sender's message rate
    let mut t = T::with(Limits {
        messages_per_minute: 5,
        ..Limits::default()
    });
    t.enter(B, "bob");
    let out = t.send(B, "", &inv(4));
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(err(&t.send(B, "", &inv(2))), "resource-constraint");
}

#[test]
fn a_decline_goes_only_to_who_invited() {
    let mut t = three();
    let decline = |to: &str| {
        format!(
            "<message><x xmlns='http://jabber.org/protocol/muc#user'><decline to='{to}'/></x></message>"
        )
    };
    // no invitation: no relay
    assert_eq!(
        err(&t.send("dave@example.org/d", "", &decline("victim@example.net"))),
        "not-acceptable"
    );
    t.send(B, "", "<message><x xmlns='http://jabber.org/protocol/muc#user'><invite to='dave@example.org'/></x></message>");
    // invited by bob, not by carol; and eve was not invited at all
    assert_eq!(
        err(&t.send("dave@example.org/d", "", &decline(C))),
        "not-acceptable"
    );
    assert_eq!(
        err(&t.send("eve@example.org/e", "", &decline(B))),
        "not-acceptable"
    );
    let out = t.send("dave@example.org/d", "", &decline(B));
    assert_eq!(to(&out, B).len(), 1, "{out:?}");
    // used up: a second decline is refused
    assert_eq!(
        err(&t.send("dave@example.org/d", "", &decline(B))),
        "not-acceptable"
    );
}

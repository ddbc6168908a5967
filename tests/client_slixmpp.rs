//! slixmpp (from PyPI), a client library nobody here wrote, against the real daemon.

mod common;
use common::*;

#[test]
fn slixmpp_logs_in_with_scram_sha_256_and_chats() {
    let d = Daemon::start();
    let out = python(
        "slix.py",
        &["chat", &d.starttls.port().to_string(), "localhost"],
    );
    assert!(
        out.contains("online alice@localhost/slix mechanism=SCRAM-SHA-256"),
        "{out}"
    );
    assert!(
        out.contains("online bob@localhost/slix mechanism=SCRAM-SHA-256"),
        "{out}"
    );
    assert!(
        out.contains("bob got chat from alice@localhost/slix: hello bob"),
        "{out}"
    );
    assert!(
        out.contains("alice got chat from bob@localhost/slix: hello alice"),
        "{out}"
    );
}

#[test]
fn slixmpp_roster_subscription_presence_and_offline_delivery() {
    let d = Daemon::start();
    let out = python(
        "slix.py",
        &["friends", &d.starttls.port().to_string(), "localhost"],
    );
    assert!(
        out.contains("alice sees bob as both in ['Friends']"),
        "{out}"
    );
    assert!(out.contains("bob sees alice as both"), "{out}");
    assert!(out.contains("presence seen both ways"), "{out}");
    assert!(out.contains("alice saw bob go offline"), "{out}");
    assert!(
        out.contains(
            "bob got offline message from alice@localhost/slix: while you were away delayed=True"
        ),
        "{out}"
    );
    assert!(out.contains("alice saw bob come back"), "{out}");
}

//! What the in-band registration tests share (`register.rs`, `register_removal.rs`).

use super::*;

pub const DOMAIN: &str = "localhost";

pub fn signup_on() -> Options {
    Options {
        domain_keys: "auto_signup = true".into(),
        ..Options::default()
    }
}

pub fn register_set(id: &str, user: &str, password: &str) -> String {
    format!(
        "<iq type='set' id='{id}'><query xmlns='jabber:iq:register'>\
         <username>{user}</username><password>{password}</password></query></iq>"
    )
}

/// The condition of an error reply, or "result".
pub fn outcome(reply: &str) -> &'static str {
    if reply.contains("type='result'") {
        return "result";
    }
    for c in [
        "conflict",
        "jid-malformed",
        "not-acceptable",
        "not-allowed",
        "service-unavailable",
        "resource-constraint",
        "policy-violation",
        "bad-request",
        "registration-required",
        "not-authorized",
    ] {
        if reply.contains(&format!(
            "<{c} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        )) {
            return c;
        }
    }
    panic!("unexpected reply: {reply}")
}

/// A new stream with TLS up, not authenticated; returns it with its features.
pub async fn tls_stream(d: &Daemon) -> (Raw, String) {
    let mut r = Raw::connect(d.starttls, DOMAIN).await;
    let f = r.starttls().await;
    (r, f)
}

pub async fn login_works(d: &Daemon, user: &str, password: &str) -> bool {
    let (mut r, _) = tls_stream(d).await;
    r.auth_scram("SCRAM-SHA-256", user, password)
        .await
        .starts_with("<success")
}

/// An iq on a bound session; returns the reply.
pub async fn ask(r: &mut Raw, iq: &str, id: &str) -> String {
    r.send(iq).await;
    r.wait_for(&format!("id='{id}'")).await
}

/// Register `user` anew on a fresh stream; the outcome.
pub async fn register(d: &Daemon, user: &str, password: &str) -> &'static str {
    let (mut r, _) = tls_stream(d).await;
    r.send(&register_set("s", user, password)).await;
    outcome(&r.next_stanza().await)
}

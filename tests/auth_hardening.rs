//! Authentication as an attacker would try it (issue 10): a stripped -PLUS mechanism
//! (SCRAM gs2 flag `y`), many password guesses in parallel from one address, many
//! unauthenticated connections from one address, and telling existing accounts from
//! missing ones by how long a failure takes.

mod common;
mod hostile_common;
use base64::Engine;
use common::*;
use hostile_common::*;
use std::time::{Duration, Instant};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// RFC 5802 §6: `y` means "I support channel binding but the server seems not to". On a
/// stream that offered SCRAM-SHA-256-PLUS, someone stripped it: the exchange fails.
#[tokio::test]
async fn scram_downgrade_flag_is_refused_where_plus_was_offered() {
    let d = Daemon::start();
    for direct in [false, true] {
        let mut r = if direct {
            let mut r = Raw::connect_tls(d.direct_tls, D).await;
            let f = r.open().await;
            assert!(f.contains("SCRAM-SHA-256-PLUS"), "{f}");
            r
        } else {
            let mut r = Raw::connect(d.starttls, D).await;
            let f = r.starttls().await;
            assert!(f.contains("SCRAM-SHA-256-PLUS"), "{f}");
            r
        };
        let first = b64("y,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL");
        r.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await;
        let e = r.next_stanza().await;
        assert!(
            e.starts_with("<failure") && e.contains("<not-authorized/>"),
            "direct TLS {direct}: {e}"
        );
        // the same exchange with 'n' (no channel binding support) goes on
        let first = b64("n,,n=alice,r=fyko+d2lbbFgONRv9qkxdawL");
        r.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await;
        let c = r.next_stanza().await;
        assert!(c.starts_with("<challenge"), "direct TLS {direct}: {c}");
    }
}

/// Thirty guesses sent at once from one address: the limit is 3, so at most three get
/// to try a password; the others wait for those, then are refused.
#[tokio::test]
async fn parallel_guesses_from_one_address_get_only_the_allowed_tries() {
    const N: usize = 30;
    let d = Daemon::with(limits(
        "auth_failures_per_ip = 3\nauth_failures_per_account = 0\nauth_throttle_window = 300",
    ));
    let mut streams = Vec::new();
    for _ in 0..N {
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        streams.push(r);
    }
    // every stream has its guess on the wire before any answer is read
    let guess = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        b64("\0alice\0guess")
    );
    for r in &mut streams {
        r.send(&guess).await;
    }
    let (mut tried, mut refused) = (0, 0);
    for r in &mut streams {
        let answer = r.next_stanza().await;
        if answer.contains("<not-authorized/>") {
            tried += 1;
        } else if answer.contains("<temporary-auth-failure/>") {
            refused += 1;
        } else {
            panic!("unexpected answer: {answer}");
        }
    }
    assert!(tried <= 3, "{tried} of {N} parallel guesses were tried");
    assert_eq!(tried + refused, N);
}

/// Logins in parallel from one address that all succeed are not refused: attempts
/// beyond the limit wait for those in flight instead.
#[tokio::test]
async fn parallel_good_logins_from_one_address_all_succeed() {
    let d = Daemon::with(limits(
        "auth_failures_per_ip = 2\nauth_failures_per_account = 2",
    ));
    let mut streams = Vec::new();
    for _ in 0..12 {
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        streams.push(r);
    }
    let login = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        b64("\0alice\0alice-pw")
    );
    for r in &mut streams {
        r.send(&login).await;
    }
    for r in &mut streams {
        let answer = r.next_stanza().await;
        assert!(answer.starts_with("<success"), "{answer}");
    }
}

/// Connections from one address that have not authenticated are capped; one that
/// authenticates makes room.
#[tokio::test]
async fn unauthenticated_connections_per_address_are_capped() {
    let (d, mut b) = setup_with(limits("unauthenticated_per_ip = 3")).await;
    let mut first = Raw::connect(d.starttls, D).await;
    first.starttls().await;
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let mut r = Raw::connect(d.starttls, D).await;
        r.open().await;
        waiting.push(r);
    }
    let mut over = Raw::connect(d.starttls, D).await;
    let out = over.read_to_close().await;
    assert!(out.contains(&stream_error("policy-violation")), "{out}");
    // one of the three authenticates: a new connection gets in
    assert!(
        first
            .auth_plain("alice", "alice-pw")
            .await
            .starts_with("<success")
    );
    let mut again = Raw::connect(d.starttls, D).await;
    let f = again.open().await;
    assert!(f.contains("<starttls"), "{f}");
    bystander_ok(&mut b).await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn assert_alike(what: &str, existing: Duration, missing: Duration) {
    let (a, b) = (existing.as_secs_f64(), missing.as_secs_f64());
    let ratio = a.max(b) / a.min(b).max(1e-9);
    assert!(
        ratio < 1.6,
        "{what}: a failure for an existing account takes {existing:?}, for a missing one \
         {missing:?} (ratio {ratio:.2}): timing tells which accounts exist"
    );
}

/// A wrong password costs the same work whether the account exists or not (PLAIN and
/// legacy authentication; SCRAM never derives keys on the server). Samples alternate
/// between the two, and medians are compared.
#[tokio::test]
async fn failures_cost_the_same_whether_the_account_exists() {
    let d = Daemon::with(limits(
        "auth_failures_per_ip = 0\nauth_failures_per_account = 0",
    ));
    const N: usize = 9;
    let (mut existing, mut missing) = (Vec::new(), Vec::new());
    for _ in 0..N {
        // a fresh stream for each pair: two failures stay under the per-stream limit
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        for (user, out) in [("alice", &mut existing), ("nobody", &mut missing)] {
            let stanza = format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
                b64(&format!("\0{user}\0wrong"))
            );
            let t = Instant::now();
            r.send(&stanza).await;
            let e = r.next_stanza().await;
            out.push(t.elapsed());
            assert!(e.contains("<not-authorized/>"), "{e}");
        }
    }
    assert_alike("PLAIN", median(existing), median(missing));
    // legacy authentication (XEP-0078)
    let mut i = 0;
    let (mut existing, mut missing) = (Vec::new(), Vec::new());
    for _ in 0..N {
        let mut l = Raw::connect(d.starttls, D).await;
        l.starttls().await;
        for (user, out) in [("alice", &mut existing), ("nobody", &mut missing)] {
            i += 1;
            let t = Instant::now();
            l.send(&format!(
                "<iq type='set' id='l{i}'><query xmlns='jabber:iq:auth'><username>{user}</username>\
                 <password>wrong</password><resource>r</resource></query></iq>"
            ))
            .await;
            let e = l.next_stanza().await;
            out.push(t.elapsed());
            assert!(e.contains("<not-authorized"), "{e}");
        }
    }
    assert_alike("legacy", median(existing), median(missing));
}

/// Exchanges left open at the challenge hold nothing: a client that starts SCRAM for an
/// account and never answers cannot keep the account's owner out.
#[tokio::test]
async fn abandoned_exchanges_do_not_lock_an_account_out() {
    let d = Daemon::with(limits(
        "auth_failures_per_ip = 10\nauth_failures_per_account = 2",
    ));
    let mut idle = Vec::new();
    for _ in 0..6 {
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        let first = b64("n,,n=alice,r=abandoned");
        r.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await;
        assert!(r.next_stanza().await.starts_with("<challenge"));
        idle.push(r);
    }
    let t = Instant::now();
    let (_alice, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "owner").await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the owner waited {:?} behind abandoned exchanges",
        t.elapsed()
    );
}

/// A client that gives up on one mechanism and starts another on the same stream is
/// not held back by its own first attempt.
#[tokio::test]
async fn a_restarted_exchange_goes_through() {
    let d = Daemon::with(limits(
        "auth_failures_per_ip = 1\nauth_failures_per_account = 1",
    ));
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    let first = b64("n,,n=alice,r=first");
    r.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
    ))
    .await;
    assert!(r.next_stanza().await.starts_with("<challenge"));
    let ok = r.auth_plain("alice", "alice-pw").await;
    assert!(ok.starts_with("<success"), "{ok}");
}

/// The iteration count of a SCRAM challenge (`i=`).
fn iterations_of(challenge: &str) -> Option<String> {
    let data = base64::engine::general_purpose::STANDARD
        .decode(inner_text(challenge))
        .ok()?;
    let text = String::from_utf8(data).ok()?;
    text.split(',')
        .find_map(|f| f.strip_prefix("i="))
        .map(str::to_string)
}

/// Accounts made under an older iteration count and names with no account answer a
/// SCRAM client-first with the same `i=`, after the setting was raised.
#[tokio::test]
async fn a_raised_iteration_count_does_not_tell_old_accounts_from_missing_ones() {
    let mut d = Daemon::with(Options {
        extra: "[auth]\nscram_iterations = 4096\n".into(),
        ..Options::default()
    });
    d.terminate();
    let text = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(
        &d.config,
        text.replace("scram_iterations = 4096", "scram_iterations = 20000"),
    )
    .expect("config");
    d.spawn();
    let mut seen = Vec::new();
    for user in ["alice", "ghost"] {
        let mut r = Raw::connect(d.starttls, D).await;
        r.starttls().await;
        let first = b64(&format!("n,,n={user},r=abcdef"));
        r.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await;
        let c = r.next_stanza().await;
        seen.push(iterations_of(&c));
    }
    assert_eq!(seen[0].as_deref(), Some("4096"), "{seen:?}");
    assert_eq!(
        seen[0], seen[1],
        "i= tells alice from a missing account: {seen:?}"
    );
}

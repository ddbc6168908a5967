//! Storage under concurrent load, through the real daemon over real sockets: messages
//! to offline accounts from several senders at once, while rosters are written and
//! accounts log in, are all stored and later delivered; none bounces.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::time::Duration;

const D: &str = "localhost";

const SENDERS: usize = 3;
const RECIPIENTS: usize = 3;
const PER_SENDER: usize = 200;

fn load_options(base: Options) -> Options {
    let mut o = base;
    o.log_level = "problems".into();
    o.accounts = vec![
        ("alice".into(), "alice-pw".into()),
        ("bob".into(), "bob-pw".into()),
    ];
    o.accounts
        .extend((0..SENDERS).map(|i| (format!("s{i}"), format!("s{i}-pw"))));
    o.accounts
        .extend((0..RECIPIENTS).map(|i| (format!("r{i}"), format!("r{i}-pw"))));
    o
}

/// The message id `s{sender}-{k}` goes to recipient `k % RECIPIENTS`.
async fn offline_race(d: &Daemon) {
    let mut senders = Vec::new();
    for s in 0..SENDERS {
        let (r, _) = Raw::login(d.starttls, D, &format!("s{s}"), &format!("s{s}-pw"), "pc").await;
        senders.push(r);
    }
    let addr = d.starttls;
    let mut tasks = tokio::task::JoinSet::new();
    for (s, mut r) in senders.into_iter().enumerate() {
        tasks.spawn(async move {
            let all: String = (0..PER_SENDER)
                .map(|k| {
                    format!(
                        "<message to='r{}@localhost' type='chat' id='s{s}-{k}'><body>m {s} {k}</body></message>",
                        k % RECIPIENTS
                    )
                })
                .collect();
            r.send(&all).await;
            r
        });
    }
    // roster writes at the same time
    tasks.spawn(async move {
        let (mut r, _) = Raw::login(addr, D, "alice", "alice-pw", "roster").await;
        for i in 0..60 {
            r.send(&format!(
                "<iq type='set' id='ro{i}'><query xmlns='jabber:iq:roster'><item jid='c{i}@localhost' name='C {i}'/></query></iq>"
            ))
            .await;
            let reply = r.wait_for(&format!("id='ro{i}'")).await;
            assert!(reply.contains("type='result'"), "roster set {i}: {reply}");
        }
        r
    });
    // and logins (credential reads, roster loads, presence)
    tasks.spawn(async move {
        let mut last = None;
        for i in 0..8 {
            let (r, _) = Raw::login(addr, D, "bob", "bob-pw", &format!("l{i}")).await;
            last = Some(r);
        }
        last.expect("logged in")
    });
    let mut clients = Vec::new();
    while let Some(r) = tasks.join_next().await {
        clients.push(r.expect("client task"));
    }
    // every message reaches its recipient once they come online
    let mut got = BTreeSet::new();
    for rcpt in 0..RECIPIENTS {
        let (mut r, _) = Raw::login(
            d.starttls,
            D,
            &format!("r{rcpt}"),
            &format!("r{rcpt}-pw"),
            "phone",
        )
        .await;
        let want = (0..SENDERS * PER_SENDER)
            .filter(|n| (n % PER_SENDER) % RECIPIENTS == rcpt)
            .count();
        let mut mine = 0;
        while mine < want {
            // (some arrive while login waits for its presence, and are kept for here)
            let Ok(m) = tokio::time::timeout(Duration::from_secs(9), r.next_non_presence()).await
            else {
                panic!(
                    "r{rcpt}: {mine} of {want} delivered; log:\n{}",
                    tail(&d.log())
                );
            };
            let id = m
                .split(" id='")
                .nth(1)
                .and_then(|s| s.split('\'').next())
                .unwrap_or_else(|| panic!("no id: {m}"))
                .to_string();
            assert!(!m.contains("type='error'"), "{m}");
            assert!(got.insert(id.clone()), "delivered twice: {id}");
            mine += 1;
        }
    }
    assert_eq!(got.len(), SENDERS * PER_SENDER);
    // and no sender got anything back
    for mut c in clients {
        if let Some(e) = c
            .try_read_until("type='error'", Duration::from_millis(300))
            .await
        {
            panic!("bounced: {e}\nlog:\n{}", tail(&d.log()));
        }
    }
    assert!(!d.log().contains("not stored"), "log: {}", tail(&d.log()));
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_offline_roster_and_logins_lose_nothing() {
    let d = Daemon::with(load_options(Options {
        postgres: false,
        ..Options::default()
    }));
    offline_race(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_offline_roster_and_logins_lose_nothing() {
    let d = Daemon::with(load_options(Options {
        postgres: true,
        ..Options::default()
    }));
    offline_race(&d).await;
}

/// More messages for one offline account than its actor's mailbox holds, in one write:
/// the account stores one per commit, so its mailbox fills; what does not fit waits in
/// the registry, in order, instead of bouncing.
async fn burst_to_one_offline_account(d: &Daemon) {
    const N: usize = 3000;
    let (mut s, _) = Raw::login(d.starttls, D, "s0", "s0-pw", "burst").await;
    let all: String = (0..N)
        .map(|k| {
            format!("<message to='r0@localhost' type='chat' id='b{k}'><body>b {k}</body></message>")
        })
        .collect();
    s.send(&all).await;
    // all of them arrive, in the order sent, once the recipient logs in
    let (mut r, _) = Raw::login(d.starttls, D, "r0", "r0-pw", "phone").await;
    for k in 0..N {
        let Ok(m) = tokio::time::timeout(Duration::from_secs(20), r.next_non_presence()).await
        else {
            panic!("{k} of {N} delivered; log:\n{}", tail(&d.log()));
        };
        assert!(!m.contains("type='error'"), "{m}");
        assert!(m.contains(&format!("id='b{k}'")), "expected b{k}, got {m}");
    }
    if let Some(e) = s
        .try_read_until("type='error'", Duration::from_millis(300))
        .await
    {
        panic!("bounced: {e}\nlog:\n{}", tail(&d.log()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_burst_beyond_the_account_mailbox_waits_in_order() {
    let d = Daemon::with(load_options(Options {
        postgres: false,
        extra: "[storage]\nmax_offline_messages = 10000\n".into(),
        ..Options::default()
    }));
    burst_to_one_offline_account(&d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_burst_beyond_the_account_mailbox_waits_in_order() {
    let d = Daemon::with(load_options(Options {
        postgres: true,
        extra: "[storage]\nmax_offline_messages = 10000\n".into(),
        ..Options::default()
    }));
    burst_to_one_offline_account(&d).await;
}

const FAST_SENDERS: usize = 4;
const PER_FAST_SENDER: usize = 1500;

/// Senders outpace storage (a writer queue of 8): every message is stored, then
/// delivered, in each sender's order; none comes back. This asserts the outcome only:
/// 6,000 messages stay under the registry's waiting bound, so it would hold without
/// the senders' reads being paused too; that the reads pause (and writes go on) is
/// `a_held_sender_still_receives`. (The recipients log in once the
/// server has read everything: a message sent while its recipient comes online may
/// still overtake one on its way to storage.)
async fn senders_outpace_storage(d: &Daemon) {
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..FAST_SENDERS {
        let (mut r, _) =
            Raw::login(d.starttls, D, &format!("s{s}"), &format!("s{s}-pw"), "fast").await;
        tasks.spawn(async move {
            let all: String = (0..PER_FAST_SENDER)
                .map(|k| {
                    format!(
                        "<message to='r{}@localhost' type='chat' id='f{s}-{k}'><body>f {s} {k}</body></message>",
                        k % 2
                    )
                })
                .collect();
            r.send(&all).await;
            // answered once the session has read and routed all of it: it reads only
            // as fast as the recipients' accounts take the messages
            r.send(&format!(
                "<iq type='get' id='sync{s}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await;
            let pong = r.wait_for(&format!("id='sync{s}'")).await;
            assert!(pong.contains("type='result'"), "{pong}");
            r
        });
    }
    let mut senders = Vec::new();
    while let Some(r) = tasks.join_next().await {
        senders.push(r.expect("sender"));
    }
    for rcpt in 0..2 {
        let (mut r, _) = Raw::login(
            d.starttls,
            D,
            &format!("r{rcpt}"),
            &format!("r{rcpt}-pw"),
            "phone",
        )
        .await;
        let want = FAST_SENDERS * PER_FAST_SENDER / 2;
        // the next k expected from each sender
        let mut next = [rcpt; FAST_SENDERS];
        for n in 0..want {
            let Ok(m) = tokio::time::timeout(Duration::from_secs(30), r.next_non_presence()).await
            else {
                panic!("r{rcpt}: {n} of {want} delivered; log:\n{}", tail(&d.log()));
            };
            assert!(!m.contains("type='error'"), "{m}");
            let id = m
                .split(" id='f")
                .nth(1)
                .and_then(|s| s.split('\'').next())
                .unwrap_or_else(|| panic!("no id: {m}"));
            let (s, k) = id.split_once('-').unwrap_or_else(|| panic!("id {id}"));
            let (s, k): (usize, usize) = (s.parse().expect("sender"), k.parse().expect("k"));
            assert_eq!(k, next[s], "r{rcpt}: from s{s} out of order");
            next[s] += 2;
        }
    }
    for mut c in senders {
        if let Some(e) = c
            .try_read_until("type='error'", Duration::from_millis(300))
            .await
        {
            panic!("bounced: {e}\nlog:\n{}", tail(&d.log()));
        }
    }
}

fn outpaced_options(postgres: bool) -> Options {
    let mut o = load_options(Options {
        postgres,
        extra: "[storage]\nmax_offline_messages = 10000\nwrite_queue = 8\n".into(),
        ..Options::default()
    });
    o.accounts
        .extend((SENDERS..FAST_SENDERS).map(|i| (format!("s{i}"), format!("s{i}-pw"))));
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_senders_outpacing_storage_are_slowed_down_not_refused() {
    senders_outpace_storage(&Daemon::with(outpaced_options(false))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_senders_outpacing_storage_are_slowed_down_not_refused() {
    senders_outpace_storage(&Daemon::with(outpaced_options(true))).await;
}

/// A sender held by back-pressure (its recipient's account cannot store: the database
/// is locked by another writer) stops being read, but is still written to: a third
/// party's message and iq reach it while it is held, and what it sent is stored once
/// the lock goes, none refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_sender_still_receives() {
    const N: usize = 1500;
    let d = Daemon::with(load_options(Options {
        postgres: false,
        extra: "[storage]\nmax_offline_messages = 10000\nwrite_queue = 8\n".into(),
        ..Options::default()
    }));
    let (mut s, s_jid) = Raw::login(d.starttls, D, "s0", "s0-pw", "held").await;
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "desk").await;
    // another writer holds SQLite's write lock (for less than the daemon's busy timeout)
    let db = d.dir.path().join("data").join("xmppd.sqlite");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(db).expect("open db");
        c.execute_batch("BEGIN IMMEDIATE").expect("lock");
        locked_tx.send(()).expect("locked");
        let _ = release_rx.recv_timeout(Duration::from_millis(4500));
        c.execute_batch("COMMIT").expect("unlock");
    });
    locked_rx.recv().expect("locked");
    let all: String = (0..N)
        .map(|k| {
            format!("<message to='r0@localhost' type='chat' id='h{k}'><body>h</body></message>")
        })
        .collect();
    s.send(&all).await;
    s.send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    // (sync is in the last batch read: answered whether or not that batch pauses)
    // by now the account's mailbox is full and the rest waits in the registry: the
    // session reads nothing more (a probe is not answered; one batch read before the
    // pause took hold is allowed, so a second probe then)
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ping = |id: &str| {
        format!("<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    };
    let mut probe = None;
    for id in ["p2", "p3"] {
        s.send(&ping(id)).await;
        let needle = format!("id='{id}'");
        if s.try_read_until(&needle, Duration::from_millis(700))
            .await
            .is_none()
        {
            probe = Some(needle);
            break;
        }
    }
    let probe = probe.expect("the sender is not held: the test proves nothing");
    a.send(&format!(
        "<message to='{s_jid}' type='chat' id='third'><body>hi</body></message>\
         <iq type='get' id='aping' to='{s_jid}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    for id in ["id='third'", "id='aping'"] {
        let got = tokio::time::timeout(Duration::from_millis(1500), s.wait_for(id)).await;
        assert!(got.is_ok(), "{id} not written to the held sender");
    }
    assert!(!s.stash_has(&probe), "the sender was not held throughout");
    release_tx.send(()).expect("release");
    locker.join().expect("locker");
    let answer = tokio::time::timeout(Duration::from_secs(30), s.wait_for(&probe))
        .await
        .expect("read again once the lock went");
    assert!(answer.contains("type='result'"), "{answer}");
    let pong = tokio::time::timeout(Duration::from_secs(30), s.wait_for("id='sync'"))
        .await
        .expect("all read once the lock went");
    assert!(pong.contains("type='result'"), "{pong}");
    if let Some(e) = s
        .try_read_until("type='error'", Duration::from_millis(300))
        .await
    {
        panic!("refused: {e}\nlog:\n{}", tail(&d.log()));
    }
}

//! Faults: clients that die at every stage of a connection leave no actor, task or
//! connection slot behind (read from the daemon's admin endpoint), and storage failures
//! reach the client as errors while the server keeps serving.

mod common;
mod hostile_common;
use common::*;
use hostile_common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

async fn read_until<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>, needle: &str) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(buf).contains(needle) {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            other => panic!(
                "waiting for {needle:?}: {other:?}; got {:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
    buf.clear();
}

async fn send<S: AsyncWrite + Unpin>(s: &mut S, data: &[u8]) {
    let _ = s.write_all(data).await;
    let _ = s.flush().await;
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect timeout")
        .expect("connect")
}

/// The first flight of a TLS client (its ClientHello), as bytes.
fn client_hello() -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut c = rustls::ClientConnection::new(client_tls_config(), name).expect("client");
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).expect("hello");
    }
    out
}

/// STARTTLS up to `<proceed/>`; the socket is ready for the handshake.
async fn to_proceed(addr: SocketAddr) -> TcpStream {
    let mut s = tcp(addr).await;
    let mut buf = Vec::new();
    send(&mut s, HDR.as_bytes()).await;
    read_until(&mut s, &mut buf, "</stream:features>").await;
    send(&mut s, format!("<starttls xmlns='{TLS_NS}'/>").as_bytes()).await;
    read_until(&mut s, &mut buf, "<proceed").await;
    s
}

/// A TLS stream with the stream reopened (features read).
async fn tls_stream(addr: SocketAddr, direct: bool) -> TlsStream<TcpStream> {
    let s = if direct {
        tcp(addr).await
    } else {
        to_proceed(addr).await
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut t = tokio::time::timeout(
        TIMEOUT,
        tokio_rustls::TlsConnector::from(client_tls_config()).connect(name, s),
    )
    .await
    .expect("tls timeout")
    .expect("tls");
    let mut buf = Vec::new();
    send(&mut t, HDR.as_bytes()).await;
    read_until(&mut t, &mut buf, "</stream:features>").await;
    t
}

/// PLAIN success, stream restarted.
async fn authenticated(addr: SocketAddr, user: &str, pw: &str) -> TlsStream<TcpStream> {
    use base64::Engine;
    let mut t = tls_stream(addr, false).await;
    let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"));
    send(
        &mut t,
        format!("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{ir}</auth>")
            .as_bytes(),
    )
    .await;
    let mut buf = Vec::new();
    read_until(&mut t, &mut buf, "<success").await;
    send(&mut t, HDR.as_bytes()).await;
    read_until(&mut t, &mut buf, "</stream:features>").await;
    t
}

async fn bound(addr: SocketAddr, user: &str, pw: &str, res: &str) -> TlsStream<TcpStream> {
    let mut t = authenticated(addr, user, pw).await;
    send(&mut t, format!("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{res}</resource></bind></iq><presence/>").as_bytes()).await;
    let mut buf = Vec::new();
    read_until(&mut t, &mut buf, "</bind>").await;
    t
}

/// Die abruptly: the kernel answers whatever comes next with a reset.
fn kill<S>(s: S)
where
    S: std::os::fd::AsRawFd,
{
    reset_on_close(&s);
    drop(s);
}

fn kill_tls(t: TlsStream<TcpStream>) {
    reset_on_close(t.get_ref().0);
    drop(t);
}

/// One way for a client to die; `n` makes resources unique.
async fn scenario(which: usize, n: usize, d: Arc<(SocketAddr, SocketAddr)>) {
    let (starttls, direct) = *d;
    match which {
        // connect and vanish, gracefully and not
        0 => drop(tcp(starttls).await),
        1 => kill(tcp(starttls).await),
        // half a stream header
        2 => {
            let mut s = tcp(starttls).await;
            send(&mut s, &HDR.as_bytes()[..HDR.len() / 2]).await;
            kill(s);
        }
        // mid-TLS-handshake: after <proceed/>, half a ClientHello, or all of it
        3 => {
            let mut s = to_proceed(starttls).await;
            let hello = client_hello();
            send(&mut s, &hello[..hello.len() / 2]).await;
            kill(s);
        }
        4 => {
            let mut s = to_proceed(starttls).await;
            send(&mut s, &client_hello()).await;
            drop(s);
        }
        5 => {
            let mut s = tcp(direct).await;
            send(&mut s, &client_hello()).await;
            kill(s);
        }
        // garbage where a TLS record should be
        6 => {
            let mut t = tls_stream(direct, true).await;
            send(t.get_mut().0, b"\x17\x03\x03\x40\x00garbage").await;
            drop(t);
        }
        // mid-SASL: SCRAM between the first challenge and the response
        7 => {
            let mut t = tls_stream(starttls, false).await;
            send(&mut t, b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiY2RlZmdoaWprbG1ub3A=</auth>").await;
            let mut buf = Vec::new();
            read_until(&mut t, &mut buf, "</challenge>").await;
            kill_tls(t);
        }
        // PLAIN waiting for its initial response
        8 => {
            let mut t = tls_stream(starttls, false).await;
            send(
                &mut t,
                b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'/>",
            )
            .await;
            let mut buf = Vec::new();
            read_until(&mut t, &mut buf, "<challenge").await;
            drop(t);
        }
        // authenticated, never bound; bind sent and the client gone at once
        9 => kill_tls(authenticated(starttls, "alice", "alice-pw").await),
        10 => {
            let mut t = authenticated(starttls, "alice", "alice-pw").await;
            send(&mut t, format!("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>gone{n}</resource></bind></iq>").as_bytes()).await;
            kill_tls(t);
        }
        // bound and available, killed while messages stream to it
        _ => {
            let victim = bound(starttls, "alice", "alice-pw", &format!("victim{n}")).await;
            let mut sender = bound(starttls, "bob", "bob-pw", &format!("sender{n}")).await;
            let msgs: String = (0..50)
                .map(|i| format!("<message to='alice@localhost/victim{n}' id='m{i}'><body>{}</body></message>", "x".repeat(500)))
                .collect();
            send(&mut sender, msgs.as_bytes()).await;
            kill_tls(victim);
            send(&mut sender, msgs.as_bytes()).await;
            send(&mut sender, b"</stream:stream>").await;
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(TIMEOUT, sender.read_to_end(&mut rest)).await;
        }
    }
}

const SCENARIOS: usize = 12;

#[tokio::test]
async fn killed_clients_leave_no_actors_behind() {
    enable_admin();
    let d = Daemon::start();
    wait_actors(&d, (0, 0, 0, 0)).await;
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "bystander").await;
    wait_actors(&d, (1, 0, 1, 1)).await;
    let addrs = Arc::new((d.starttls, d.direct_tls));
    // every scenario three times, all at once
    let mut set = tokio::task::JoinSet::new();
    for round in 0..3 {
        for which in 0..SCENARIOS {
            let n = round * SCENARIOS + which;
            set.spawn(scenario(which, n, addrs.clone()));
        }
    }
    while let Some(r) = set.join_next().await {
        r.expect("scenario");
    }
    // everything the dead clients held is released; the bystander is served
    let v = wait_actors(&d, (1, 0, 1, 1)).await;
    bystander_ok(&mut b).await;
    assert_eq!(count(&v, "refused_connections"), 0, "{v}");
    drop(b);
    wait_actors(&d, (0, 0, 0, 0)).await;
}

#[tokio::test]
async fn stalled_handshakes_and_logins_time_out_and_are_released() {
    enable_admin();
    let d = Daemon::with(limits("tls_timeout = 1\nauth_timeout = 2"));
    let mut held = Vec::new();
    // one byte of a ClientHello, on both kinds of listener; a stream that never
    // authenticates
    let mut s = to_proceed(d.starttls).await;
    send(&mut s, &client_hello()[..1]).await;
    held.push(s);
    let mut s = tcp(d.direct_tls).await;
    send(&mut s, &client_hello()[..1]).await;
    held.push(s);
    let mut s = tcp(d.starttls).await;
    send(&mut s, HDR.as_bytes()).await;
    held.push(s);
    wait_actors(&d, (3, 3, 0, 3)).await;
    // released by the server, not by the clients (they still hold their sockets)
    wait_actors(&d, (0, 0, 0, 0)).await;
    drop(held);
}

#[tokio::test]
async fn admin_endpoint_answers_stats_and_nothing_else() {
    enable_admin();
    let d = Daemon::start();
    let addr = admin_addr(&d);
    assert!(addr.ip().is_loopback());
    let v = stats(&d).await;
    for key in [
        "connections",
        "connection_actors",
        "session_actors",
        "io_tasks",
        "rss_bytes",
        "uptime_seconds",
        "auth_throttle_addresses",
        "shaper_delayed_reads",
        "storage_writes",
        "storage_commits",
        "storage_errors",
        "storage_pending",
        "storage_failing",
    ] {
        count(&v, key);
    }
    let token = admin_token(&d);
    let (status, _) = admin_get(addr, "/nope", &token).await;
    assert!(status.contains("404"), "{status}");
    // who is connected is for the holder of DATA_DIR/http.token only
    for path in ["/stats", "/monitor", "/monitor.json"] {
        for wrong in ["", &"0".repeat(token.len()), &token[1..]] {
            let (status, body) = admin_get(addr, path, wrong).await;
            // the monitoring page sends a browser to the WebAdmin's login instead
            let refused = status.contains("401") || (path == "/monitor" && status.contains("303"));
            assert!(
                refused && !body.contains("connections"),
                "{path} {wrong}: {status}"
            );
        }
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(d.dir.path().join("data").join("http.token")).expect("token");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // /metrics stays open (counts only)
    let (status, _) = admin_get(addr, "/metrics", "").await;
    assert!(status.contains("200"), "{status}");
    // a request head that never ends is cut off
    let mut s = tcp(addr).await;
    // (actix-http's fixed bound on a request head is 128 KiB)
    let junk = vec![b'a'; 200 * 1024];
    let _ = s.write_all(&junk).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).contains("431"), "{out:?}");
    // other methods are refused
    let mut s = tcp(addr).await;
    send(
        &mut s,
        format!("POST /stats HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).contains("405"), "{out:?}");
    // a page of another origin whose name resolves to loopback (DNS rebinding) gets
    // 403; a request that names no host 400 (RFC 9112 §3.2): nothing either way
    for (host, code) in [("Host: attacker.example\r\n", "403"), ("", "400")] {
        let mut s = tcp(addr).await;
        send(
            &mut s,
            format!("GET /stats HTTP/1.1\r\n{host}\r\n").as_bytes(),
        )
        .await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT, s.read_to_end(&mut out)).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.contains(code) && !out.contains("connections"), "{out}");
    }
    // a body announced and never sent frees its connection after 5 s with 408
    let mut s = tcp(addr).await;
    send(
        &mut s,
        format!(
            "POST /monitor/close HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nid="
        )
        .as_bytes(),
    )
    .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).contains("408"), "{out:?}");
}

// ----------------------------------------------------------------- storage --

#[tokio::test]
async fn storage_errors_reach_the_client_and_the_server_goes_on() {
    let (d, mut b) = setup().await;
    // the table the credentials live in disappears under the running server
    d.sql("ALTER TABLE accounts RENAME TO accounts_away");
    let mut r = Raw::connect(d.starttls, D).await;
    r.starttls().await;
    let f = r.auth_plain("alice", "alice-pw").await;
    assert!(f.contains("<temporary-auth-failure/>"), "{f}");
    let f = r.auth_scram("SCRAM-SHA-256", "alice", "alice-pw").await;
    assert!(f.contains("<temporary-auth-failure/>"), "{f}");
    r.send("<iq type='set' id='legacy'><query xmlns='jabber:iq:auth'><username>alice</username><password>alice-pw</password><resource>old</resource></query></iq>")
        .await;
    let reply = r.next_stanza().await;
    assert!(
        reply.contains("type='error'") && reply.contains("<internal-server-error"),
        "{reply}"
    );
    // the logged-in user is served throughout
    bystander_ok(&mut b).await;
    // storage back: logins work again, the errors did not count as wrong passwords
    d.sql("ALTER TABLE accounts_away RENAME TO accounts");
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "back").await;
    bystander_ok(&mut a).await;
}

// ------------------------------------------------------- crash durability --

// multi-threaded: wait_log blocks its thread while the sender keeps sending
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_traffic_loses_no_accepted_offline_message() {
    let mut o = Options::default();
    o.accounts
        .extend((0..5).map(|i| (format!("extra{i}"), format!("pw{i}"))));
    let mut d = Daemon::with(o);
    // alice writes to offline bob without pause; the daemon dies mid-stream
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let sender = tokio::spawn(async move {
        for i in 0..100_000 {
            if !a
                .try_send(
                    format!(
                        "<message to='bob@localhost' type='chat' id='k{i}'><body>durable {i}</body></message>"
                    )
                    .as_bytes(),
                )
                .await
            {
                return i;
            }
        }
        100_000
    });
    // at least this many were stored before the kill (log lines lag behind the commits)
    d.wait_log("message stored offline", 20);
    d.kill9();
    let stored = d.log().matches("message stored offline").count();
    let sent = sender.await.expect("sender");
    assert!(sent >= stored, "{sent} sent, {stored} stored");
    d.spawn();
    // bob collects everything kept for him
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "phone").await;
    let mut got = Vec::new();
    while let Some(m) = b.try_read_until("</message>", Duration::from_secs(2)).await {
        let id = m
            .split("id='")
            .nth(1)
            .and_then(|s| s.split('\'').next())
            .and_then(|s| s.strip_prefix('k'))
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("unexpected: {m}"));
        assert!(m.contains(&format!("durable {id}")), "{m}");
        got.push(id);
    }
    eprintln!(
        "sent {sent}, stored before the kill (logged) {stored}, delivered {}",
        got.len()
    );
    let mut unique = got.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), got.len(), "duplicates: {got:?}");
    assert!(
        got.len() >= stored,
        "{} delivered, {stored} were stored before the crash",
        got.len()
    );
    assert!(got.iter().all(|i| *i < sent.max(1)), "never sent: {got:?}");
    // accounts intact: all of them log in, the list is complete
    let mut accounts = vec![("alice".to_string(), "alice-pw".to_string())];
    accounts.extend((0..5).map(|i| (format!("extra{i}"), format!("pw{i}"))));
    for (u, p) in &accounts {
        let (mut r, _) = Raw::login(d.starttls, D, u, p, "after").await;
        bystander_ok(&mut r).await;
    }
    let list = d.cli(&["account", "list"]);
    let list = String::from_utf8_lossy(&list.stdout);
    for u in ["alice", "bob", "extra0", "extra4"] {
        assert!(list.contains(&format!("{u}@localhost")), "{list}");
    }
    // delivered once
    drop(b);
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "again").await;
    assert!(
        b.try_read_until("</message>", Duration::from_millis(500))
            .await
            .is_none()
    );
}

// ------------------------------------------------------ the writer's faults --

/// Files nobody can write, not even root, until this is dropped (`chattr +i`).
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    fn set(files: Vec<std::path::PathBuf>) -> Immutable {
        let out = std::process::Command::new("chattr")
            .arg("+i")
            .args(&files)
            .output()
            .expect("chattr (e2fsprogs) is needed for this test");
        assert!(
            out.status.success(),
            "chattr +i failed (the test needs root on a filesystem with the immutable flag): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Immutable(files)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .args(&self.0)
            .status();
    }
}

enum Fault {
    /// The SQLite files become unwritable under the running server.
    ReadOnlyFiles,
    /// The PostgreSQL server goes away (and comes back).
    ServerDown,
}

/// While the backend cannot write, a message to an offline account comes back to its
/// sender as an error, the log says why (a Problem per message, one Major line for the
/// backend), `/stats` shows it; the server keeps serving, and once the backend is back
/// the next message is stored and delivered, and the refused one is not.
async fn unusable_backend_bounces_and_recovers(fault: Fault) {
    enable_admin();
    let mut d = Daemon::with(Options {
        postgres: matches!(fault, Fault::ServerDown),
        ..Options::default()
    });
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let msg = |id: &str| {
        format!("<message to='bob@localhost' type='chat' id='{id}'><body>{id}</body></message>")
    };
    a.send(&msg("before")).await;
    d.wait_log("message stored offline", 1);
    let data = d.dir.path().join("data");
    let guard = match fault {
        Fault::ReadOnlyFiles => Some(Immutable::set(vec![
            data.join("xmppd.sqlite"),
            data.join("xmppd.sqlite-wal"),
        ])),
        Fault::ServerDown => {
            d.pg.as_mut().expect("postgres").stop();
            None
        }
    };
    a.send(&msg("during")).await;
    let e = a.wait_for("id='during'").await;
    assert!(
        e.contains("type='error'") && e.contains("<internal-server-error"),
        "{e}"
    );
    bystander_ok(&mut a).await;
    let v = stats(&d).await;
    assert_eq!(count(&v, "storage_failing"), 1, "{v}");
    assert!(count(&v, "storage_errors") >= 1, "{v}");
    // (the log is written asynchronously: it may lag behind the error stanza)
    d.wait_log("storage unusable: writes fail", 1);
    d.wait_log("offline message not stored", 1);
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("PROBLEM") && l.contains("offline message not stored")),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("MAJOR") && l.contains("storage unusable")),
        "{log}"
    );
    assert!(!log.contains("FATAL") && !log.contains("panick"), "{log}");
    // repaired: the next message is stored
    drop(guard);
    if matches!(fault, Fault::ServerDown) {
        d.pg.as_mut().expect("postgres").restart();
    }
    a.send(&msg("after")).await;
    d.wait_log("storage writes work again", 1);
    d.wait_log("message stored offline", 2);
    assert_eq!(count(&stats(&d).await, "storage_failing"), 0);
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "phone").await;
    let first = b.next_non_presence().await;
    let second = b.next_non_presence().await;
    assert!(first.contains("id='before'"), "{first}");
    assert!(second.contains("id='after'"), "{second}");
    b.expect_only_presence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn sqlite_read_only_files_bounce_messages_and_the_server_recovers() {
    unusable_backend_bounces_and_recovers(Fault::ReadOnlyFiles).await;
}

#[tokio::test]
async fn postgres_server_down_bounces_messages_and_the_server_recovers() {
    unusable_backend_bounces_and_recovers(Fault::ServerDown).await;
}

/// A tmpfs mounted for the test (root only), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (the disk-full test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let st = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("remount");
        assert!(st.success(), "remount");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The disk under the SQLite database fills up: every message that cannot be stored
/// comes back to its sender as an error, every other one is delivered later, none is
/// lost silently; with room again, storing works again.
#[tokio::test]
async fn sqlite_disk_full_bounces_what_it_cannot_store_and_recovers() {
    enable_admin();
    let mnt = tempfile::tempdir().expect("tempdir");
    let fs = Tmpfs::mount(mnt.path(), "1m");
    let d = Daemon::with(Options {
        postgres: false,
        extra: format!(
            // bounces carry the 40 kB bodies back: room for all of them
            "[limits]\nread_rate = 0\nwrite_buffer = 16777216\n[storage]\ndatabase = \"{}\"\nmax_offline_messages = 100000\n",
            mnt.path().join("xmppd.sqlite").display()
        ),
        ..Options::default()
    });
    let (mut a, _) = Raw::login(d.starttls, D, "alice", "alice-pw", "pc").await;
    let body = "x".repeat(40_000);
    const N: usize = 60;
    for i in 0..N {
        a.send(&format!(
            "<message to='bob@localhost' type='chat' id='f{i}'><body>{i} {body}</body></message>"
        ))
        .await;
    }
    // 60 x 40 kB cannot fit in 1 MiB: some come back
    let first = a.wait_for("type='error'").await;
    assert!(first.contains("<internal-server-error"), "{first}");
    let mut bounced = std::collections::BTreeSet::new();
    let id_of = |s: &str| {
        s.split(" id='")
            .nth(1)
            .and_then(|x| x.split('\'').next())
            .unwrap_or_default()
            .to_string()
    };
    bounced.insert(id_of(&first));
    while let Ok(s) = tokio::time::timeout(Duration::from_secs(2), a.next_non_presence()).await {
        assert!(s.contains("<internal-server-error"), "{s}");
        bounced.insert(id_of(&s));
    }
    assert_eq!(count(&stats(&d).await, "storage_failing"), 1);
    d.wait_log("storage unusable: writes fail", 1);
    assert!(d.log().contains("full"), "the log names the cause");
    // room again
    fs.resize("64m");
    a.send("<message to='bob@localhost' type='chat' id='after'><body>after</body></message>")
        .await;
    d.wait_log("storage writes work again", 1);
    let (mut b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "phone").await;
    let mut delivered = std::collections::BTreeSet::new();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(3), b.next_non_presence())
            .await
            .expect("bob gets every stored message, ending with 'after'");
        let id = id_of(&m);
        assert!(delivered.insert(id.clone()), "twice: {id}");
        if id == "after" {
            break;
        }
    }
    delivered.remove("after");
    assert!(!delivered.is_empty() && !bounced.is_empty());
    // every message either stored and delivered, or bounced; never both, never neither
    assert!(delivered.is_disjoint(&bounced), "{delivered:?} {bounced:?}");
    assert_eq!(
        delivered.len() + bounced.len(),
        N,
        "{delivered:?} {bounced:?}"
    );
    drop(b);
    drop(d);
    drop(fs);
}

//! Helpers for the hostile-peer and fault tests: stream errors checked together with a
//! logged-in bystander, abrupt disconnects (RST), and the daemon's admin endpoint.
#![allow(dead_code)]

use crate::common::*;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const D: &str = "localhost";
pub const HDR: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
pub const STREAMS_ERR: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// The wire form of a stream error condition.
pub fn stream_error(cond: &str) -> String {
    format!("<stream:error><{cond} xmlns='{STREAMS_ERR}'/>")
}

/// A fresh connection: plain and unauthenticated, or logged in as alice.
pub async fn fresh(d: &Daemon, login: bool, resource: &str) -> Raw {
    if login {
        Raw::login(d.starttls, D, "alice", "alice-pw", resource)
            .await
            .0
    } else {
        Raw::connect(d.starttls, D).await
    }
}

/// The next stanza that is not a presence (presence of the account's other resources
/// and of contacts comes and goes on its own).
pub async fn next_non_presence(r: &mut Raw) -> String {
    loop {
        let s = r.next_stanza().await;
        if !s.starts_with("<presence") {
            return s;
        }
    }
}

/// No message or iq arrives within a short while (presence may).
pub async fn nothing_delivered(r: &mut Raw) {
    let t = Duration::from_millis(200);
    if let Some(s) = r.try_read_until("<message", t).await {
        panic!("unexpected message: {s}");
    }
    if let Some(s) = r.try_read_until("<iq", t).await {
        panic!("unexpected iq: {s}");
    }
}

/// The bystander still gets answers.
pub async fn bystander_ok(b: &mut Raw) {
    let id = format!("still-there-{}", rand::random::<u32>());
    b.send(&format!(
        "<iq to='localhost' type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
    ))
    .await;
    let pong = next_non_presence(b).await;
    assert!(
        pong.contains(&format!("id='{id}'")) && pong.contains("type='result'"),
        "bystander: {pong}"
    );
}

/// Send `input` on `r`, expect stream error `cond`, the stream closed properly, and the
/// bystander unaffected. Returns everything the attacker received.
pub async fn attack(mut r: Raw, bystander: &mut Raw, input: &[u8], cond: &str) -> String {
    r.try_send(input).await;
    let out = r.read_to_close().await;
    assert!(
        out.contains(&stream_error(cond)),
        "expected {cond} for {:?}, got: {out}",
        String::from_utf8_lossy(&input[..input.len().min(300)])
    );
    assert!(
        out.trim_end().ends_with("</stream:stream>"),
        "stream closed properly: {out}"
    );
    bystander_ok(bystander).await;
    out
}

/// A daemon with bob logged in as the bystander.
pub async fn setup_with(o: Options) -> (Daemon, Raw) {
    let d = Daemon::with(o);
    let (b, _) = Raw::login(d.starttls, D, "bob", "bob-pw", "bystander").await;
    (d, b)
}

pub async fn setup() -> (Daemon, Raw) {
    setup_with(Options::default()).await
}

/// Options with extra `[limits]` settings.
pub fn limits(extra: &str) -> Options {
    Options {
        extra: format!("[limits]\n{extra}\n"),
        ..Options::default()
    }
}

/// Make the next close of this socket a reset (RST), as when a process dies with
/// unread data or a middlebox drops the connection.
pub fn reset_on_close(s: &impl AsRawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket we own, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

// ------------------------------------------------------------------ admin --

/// Every daemon this test process starts listens for admin requests on a free
/// loopback port (the daemon reads XMPPD_ADMIN).
pub fn enable_admin() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, before this process starts any daemon; std serialises
        // environment access with Command::spawn.
        unsafe { std::env::set_var("XMPPD_ADMIN", "127.0.0.1:0") };
    });
}

pub fn admin_addr(d: &Daemon) -> SocketAddr {
    let f = d.dir.path().join("data").join("admin.addr");
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e} (was enable_admin() called?)", f.display()))
        .trim()
        .parse()
        .expect("admin address")
}

/// The token `/stats` and `/monitor*` need (the daemon writes it at start).
pub fn admin_token(d: &Daemon) -> String {
    let f = d.dir.path().join("data").join("http.token");
    std::fs::read_to_string(&f)
        .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        .trim()
        .to_string()
}

/// GET a path from the admin endpoint with `token` as a bearer: (status line, body).
pub async fn admin_get(addr: SocketAddr, path: &str, token: &str) -> (String, String) {
    let mut s = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("admin connect timeout")
        .expect("admin connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("admin write");
    let mut buf = Vec::new();
    tokio::time::timeout(TIMEOUT, s.read_to_end(&mut buf))
        .await
        .expect("admin read timeout")
        .expect("admin read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

pub async fn stats(d: &Daemon) -> serde_json::Value {
    let (status, body) = admin_get(admin_addr(d), "/stats", &admin_token(d)).await;
    assert!(status.contains("200"), "{status}");
    serde_json::from_str(&body).expect("stats JSON")
}

pub fn count(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// The live actor counts: (connections, connection actors, session actors, I/O tasks).
/// A bound stream has no connection actor: its session took the stream over.
pub fn actors(v: &serde_json::Value) -> (u64, u64, u64, u64) {
    (
        count(v, "connections"),
        count(v, "connection_actors"),
        count(v, "session_actors"),
        count(v, "io_tasks"),
    )
}

/// Wait (up to 15 s) until the live counts are `want`; returns the last stats.
pub async fn wait_actors(d: &Daemon, want: (u64, u64, u64, u64)) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let v = stats(d).await;
        if actors(&v) == want {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("actor counts never returned to {want:?}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

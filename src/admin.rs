//! A small monitoring endpoint for operators and tests: `GET /stats` answers the live
//! counters (connections, connection actors, session actors, I/O tasks...) as JSON;
//! `GET /s2s` each outbound queue (federation): its state, length and counters.
//!
//! It is off unless the environment variable `XMPPD_ADMIN` names an address to listen
//! on (`127.0.0.1:0` picks a free port). It has no authentication: bind it to loopback.
//! The bound address is printed as `admin ADDR` and written to `DATA_DIR/admin.addr`.
//! A non-loopback address is refused, and so is a request whose `Host` header names
//! anything but a loopback address or `localhost` (DNS rebinding from a browser).
//! A hand-written HTTP/1.1 responder: one request per connection, the request head
//! capped at 8 KiB and 5 seconds, at most 32 connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use xmppd_actors::context::Ctx;

pub const ENV: &str = "XMPPD_ADMIN";
const MAX_HEAD: usize = 8 * 1024;
const MAX_CONNECTIONS: usize = 32;

/// Start the endpoint when `XMPPD_ADMIN` is set; returns the bound address.
pub fn start(ctx: &Ctx, log: &slog::Logger) -> Option<SocketAddr> {
    let want = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty())?;
    let addr: SocketAddr = match want.trim().parse() {
        Ok(a) => a,
        Err(e) => {
            slog::error!(log, "admin endpoint not started: bad address"; "address" => &want, "error" => %e);
            return None;
        }
    };
    if !addr.ip().is_loopback() {
        // no authentication here: anyone who reaches it reads the server's state
        slog::error!(log, "admin endpoint not started: it has no authentication, so it listens on loopback only"; "address" => %addr);
        return None;
    }
    let std = match std::net::TcpListener::bind(addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            slog::error!(log, "admin endpoint not started"; "address" => %addr, "error" => %e);
            return None;
        }
    };
    let listener = match TcpListener::from_std(std) {
        Ok(l) => l,
        Err(e) => {
            slog::error!(log, "admin endpoint not started"; "error" => %e);
            return None;
        }
    };
    let bound = listener.local_addr().ok()?;
    println!("admin {bound}");
    let file = ctx.settings.get().data_dir.join("admin.addr");
    if let Err(e) = std::fs::write(&file, bound.to_string()) {
        slog::warn!(log, "cannot write the admin address"; "file" => %file.display(), "error" => %e);
    }
    slog::info!(log, "admin endpoint listening"; "address" => %bound);
    let ctx = ctx.clone();
    let busy = Arc::new(AtomicUsize::new(0));
    actix_rt::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if busy.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
                busy.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            let ctx = ctx.clone();
            let busy = busy.clone();
            actix_rt::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), serve(sock, &ctx)).await;
                busy.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    Some(bound)
}

/// What `GET /stats` answers.
pub fn stats_json(ctx: &Ctx) -> serde_json::Value {
    let mut v = ctx.stats.snapshot();
    if let serde_json::Value::Object(m) = &mut v {
        let (addresses, accounts) = xmppd_proto::auth::throttle::AuthThrottle::global().len();
        m.insert(
            "uptime_seconds".into(),
            ctx.started.elapsed().as_secs().into(),
        );
        m.insert("rss_bytes".into(), rss_bytes().into());
        m.insert("auth_throttle_addresses".into(), addresses.into());
        m.insert("auth_throttle_accounts".into(), accounts.into());
        for (k, n) in ctx.storage.backend().stats() {
            m.insert(k.into(), n.into());
        }
        m.insert(
            "shaper_delayed_reads".into(),
            xmppd_proto::net::shaper::DELAYED_READS
                .load(Ordering::Relaxed)
                .into(),
        );
    }
    v
}

/// Resident set size of this process (0 where /proc is not there).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

async fn serve(mut sock: TcpStream, ctx: &Ctx) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while find(&head, b"\r\n\r\n").is_none() && find(&head, b"\n\n").is_none() {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(&mut sock, 431, "text/plain", "request head too large\n").await;
        }
    }
    if !host_is_loopback(&head) {
        // a web page on another origin that resolved its name to 127.0.0.1 (DNS
        // rebinding) names itself in Host: it gets nothing
        return respond(
            &mut sock,
            403,
            "text/plain",
            "Host must name a loopback address\n",
        )
        .await;
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/stats") => {
            let body = format!("{}\n", stats_json(ctx));
            respond(&mut sock, 200, "application/json", &body).await
        }
        ("GET", "/s2s") => {
            let queues = xmppd_actors::s2s::queues(ctx).await;
            let body = format!("{}\n", serde_json::json!({ "outbound": queues }));
            respond(&mut sock, 200, "application/json", &body).await
        }
        ("GET", "/") => {
            respond(
                &mut sock,
                200,
                "text/plain",
                "xmppd admin: GET /stats, GET /s2s\n",
            )
            .await
        }
        ("GET", _) => respond(&mut sock, 404, "text/plain", "not found\n").await,
        _ => respond(&mut sock, 405, "text/plain", "only GET\n").await,
    }
}

async fn respond(sock: &mut TcpStream, code: u16, ty: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ty}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(msg.as_bytes()).await?;
    sock.shutdown().await
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The request's `Host` names a loopback address or `localhost` (any port).
fn host_is_loopback(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let Some(host) = text.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("host")
            .then(|| v.trim().to_string())
    }) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::host_is_loopback;

    #[test]
    fn only_loopback_hosts() {
        let req = |h: &str| format!("GET /stats HTTP/1.1\r\n{h}\r\n\r\n").into_bytes();
        for ok in [
            "Host: 127.0.0.1:5280",
            "host: localhost",
            "Host: [::1]:80",
            "HOST: 127.9.9.9",
        ] {
            assert!(host_is_loopback(&req(ok)), "{ok}");
        }
        for bad in [
            "Host: evil.example",
            "Host: 10.0.0.1:5280",
            "Host: localhost.evil.example",
            "X-Host: 127.0.0.1",
            "",
        ] {
            assert!(!host_is_loopback(&req(bad)), "{bad}");
        }
    }
}

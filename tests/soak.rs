//! A soak run with connection churn, loopback only, bounded in time. Ignored by default:
//!
//! ```sh
//! SOAK_SECONDS=300 cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! Workers log in, send messages to a reader, and leave (cleanly, by reset, or mid-SASL),
//! fail authentication, send bad XML, or drop TLS handshakes, for SOAK_SECONDS (default
//! 180). The daemon's admin endpoint is sampled every 5 s; at the end every actor must be
//! released and the resident size must have stopped growing. Results go to docs/SOAK.md.

mod common;
mod hostile_common;
use common::*;
use hostile_common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WORKERS: usize = 16;

#[derive(Default)]
struct Counts {
    logins: AtomicU64,
    messages: AtomicU64,
    received: AtomicU64,
    bad: AtomicU64,
    resets: AtomicU64,
}

async fn worker(
    id: usize,
    d: Arc<(std::net::SocketAddr, std::net::SocketAddr)>,
    stop: Arc<AtomicBool>,
    c: Arc<Counts>,
) {
    let (starttls, direct) = *d;
    let user = format!("u{id}");
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        match round % 8 {
            // a session that chats, then leaves cleanly or by reset
            0..=3 => {
                let (mut r, _) = Raw::login(starttls, D, &user, "pw", &format!("r{round}")).await;
                c.logins.fetch_add(1, Ordering::Relaxed);
                let body = "x".repeat(200 + (round as usize % 7) * 300);
                for i in 0..20 {
                    r.send(&format!(
                        "<message to='sink@localhost/sink' id='{id}-{round}-{i}'><body>{body}</body></message>"
                    ))
                    .await;
                }
                c.messages.fetch_add(20, Ordering::Relaxed);
                r.send("<iq to='localhost' type='get' id='rt'><ping xmlns='urn:xmpp:ping'/></iq>")
                    .await;
                r.read_until("id='rt'").await;
                if round.is_multiple_of(2) {
                    r.send("</stream:stream>").await;
                    let _ = r.try_read_until("</stream:stream>", TIMEOUT).await;
                } else {
                    c.resets.fetch_add(1, Ordering::Relaxed);
                }
                drop(r);
            }
            // a wrong password
            4 => {
                let mut r = Raw::connect(starttls, D).await;
                r.starttls().await;
                let f = r.auth_scram("SCRAM-SHA-256", &user, "wrong").await;
                assert!(f.contains("not-authorized"), "{f}");
                c.bad.fetch_add(1, Ordering::Relaxed);
            }
            // bad XML before and after login
            5 => {
                let mut r = Raw::connect(starttls, D).await;
                r.try_send(format!("{HDR}<message><body></message>").as_bytes())
                    .await;
                let out = r.read_to_close().await;
                assert!(out.contains("not-well-formed"), "{out}");
                c.bad.fetch_add(1, Ordering::Relaxed);
            }
            // direct TLS, then gone before a word
            6 => {
                let r = Raw::connect_tls(direct, D).await;
                drop(r);
                c.resets.fetch_add(1, Ordering::Relaxed);
            }
            // mid-SASL: the first SCRAM challenge, then gone
            _ => {
                let mut r = Raw::connect(starttls, D).await;
                r.starttls().await;
                r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiY2RlZmdoaWprbG1ub3A=</auth>")
                    .await;
                r.read_until("</challenge>").await;
                drop(r);
                c.resets.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak run: minutes long, run by hand (see the module doc)"]
async fn soak_with_connection_churn() {
    enable_admin();
    let secs: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(180);
    let mut o = limits("read_rate = 0\nauth_failures_per_ip = 0\nauth_failures_per_account = 0");
    o.log_level = "problems".into();
    o.accounts = (0..WORKERS)
        .map(|i| (format!("u{i}"), "pw".to_string()))
        .chain(std::iter::once(("sink".to_string(), "pw".to_string())))
        .collect();
    let d = Daemon::with(o);
    let (mut sink, _) = Raw::login(d.starttls, D, "sink", "pw", "sink").await;
    let start_stats = stats(&d).await;
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    // the reader: counts what arrives, never falls behind
    let reader = {
        let stop = stop.clone();
        let counts = counts.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if sink
                    .try_read_until("</message>", Duration::from_millis(500))
                    .await
                    .is_some()
                {
                    counts.received.fetch_add(1, Ordering::Relaxed);
                }
            }
            sink
        })
    };
    let addrs = Arc::new((d.starttls, d.direct_tls));
    let mut tasks = Vec::new();
    for id in 0..WORKERS {
        tasks.push(tokio::spawn(worker(
            id,
            addrs.clone(),
            stop.clone(),
            counts.clone(),
        )));
    }
    let t0 = Instant::now();
    let mut samples = Vec::new();
    println!("| t (s) | RSS (MiB) | connections | sessions | logins | messages |");
    println!("| --- | --- | --- | --- | --- | --- |");
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let v = stats(&d).await;
        let rss = count(&v, "rss_bytes");
        samples.push((t0.elapsed().as_secs(), rss));
        println!(
            "| {} | {:.1} | {} | {} | {} | {} |",
            t0.elapsed().as_secs(),
            rss as f64 / 1048576.0,
            count(&v, "connections"),
            count(&v, "session_actors"),
            counts.logins.load(Ordering::Relaxed),
            counts.messages.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker");
    }
    let mut sink = reader.await.expect("reader");
    // everything but the reader is released
    let end = wait_actors(&d, (1, 0, 1, 1)).await;
    // the reader is still served (after what was still on its way to it)
    sink.send("<iq to='localhost' type='get' id='soak-end'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    let rest = sink.read_until("id='soak-end'").await;
    counts
        .received
        .fetch_add(rest.matches("</message>").count() as u64, Ordering::Relaxed);
    let quarter = samples.len() / 4;
    let warm_max = samples[..quarter.max(1)]
        .iter()
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    let last = samples.last().map(|s| s.1).unwrap_or(0);
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    println!(
        "\nstart RSS {:.1} MiB, max in first quarter {:.1} MiB, peak {:.1} MiB, end {:.1} MiB",
        count(&start_stats, "rss_bytes") as f64 / 1048576.0,
        warm_max as f64 / 1048576.0,
        peak as f64 / 1048576.0,
        last as f64 / 1048576.0
    );
    println!(
        "logins {}, messages sent {}, received {}, bad streams and failed auths {}, resets {}",
        counts.logins.load(Ordering::Relaxed),
        counts.messages.load(Ordering::Relaxed),
        counts.received.load(Ordering::Relaxed),
        counts.bad.load(Ordering::Relaxed),
        counts.resets.load(Ordering::Relaxed),
    );
    println!("final stats: {end}");
    // flat: no more than 25% (and 16 MiB) above what the warm-up reached
    assert!(
        last <= warm_max + (warm_max / 4).max(16 << 20),
        "RSS kept growing: {samples:?}"
    );
}

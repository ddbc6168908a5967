//! The offline scenario: several senders write to several recipients who are not
//! logged in, at rising open-loop rates; after each step the recipients log in and
//! collect what the server stored.
//!
//! A step is: send at the offered rate for `step` seconds; wait until the server's CPU
//! goes quiet (it has stored everything it accepted); then every recipient logs in,
//! sends initial presence and counts the messages of that step it is given. Per step:
//! messages sent, bounced (error replies to the senders), stored (collected), lost
//! (sent − bounced − stored), the store rate (stored over the time from the step's
//! start until the server went quiet) and the server's CPU per stored message. The
//! steps stop after the first one where the server fell well behind the offered rate.

use crate::client::{Conn, Error, Stream};
use crate::procstat::{Mark, sample};
use crate::report::{Better, Report};
use crate::scenarios::{Env, login_many, secs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::task::JoinSet;
use xmppd_bench::xml::{self, Item, Scanner};

pub struct OfflineArgs {
    pub senders: usize,
    pub recipients: usize,
    /// Senders are accounts first..first+senders, recipients the next ones.
    pub first: u64,
    /// Offered rates, messages/s over all senders, one step each.
    pub rates: Vec<f64>,
    pub step: Duration,
    /// Longest wait for the server to go quiet after a step.
    pub settle_timeout: Duration,
    /// Another process tree whose CPU must be quiet too (a database server).
    pub quiet_pid: Option<u32>,
    pub login_concurrency: usize,
    pub ramp_timeout: Duration,
}

/// Bounces seen by the senders' readers, by step (the step number is in the id).
struct Bounces {
    by_step: Vec<AtomicU64>,
    /// How many bounces were printed (the first few are).
    shown: AtomicU64,
}

/// Read a sender's stream until it ends, counting error replies to our messages.
async fn bounce_reader(mut rd: ReadHalf<Stream>, mut scan: Scanner, b: Arc<Bounces>) {
    loop {
        loop {
            let item = match scan.next_item() {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(_) => return,
            };
            match item {
                Item::Element(range) => {
                    let el = scan.slice(range);
                    if xml::local_name(el) == b"message" && xml::attr(el, "type") == Some(b"error")
                    {
                        let step = xml::attr(el, "id")
                            .and_then(|id| id.strip_prefix(b"o"))
                            .and_then(|id| id.split(|&c| c == b'-').next())
                            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<usize>().ok());
                        if let Some(c) = step.and_then(|s| b.by_step.get(s)) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        if b.shown.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("xmppd-load: bounced: {}", String::from_utf8_lossy(el));
                        }
                    }
                }
                Item::End => return,
                Item::Header(_) => {}
            }
        }
        match rd.read_buf(scan.buffer()).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// One sender's part of a step: `rate` messages/s for `dur`, round-robin over the
/// recipients starting at its own offset. Returns the writer and how many it sent.
#[allow(clippy::too_many_arguments)]
async fn send_step(
    mut wr: WriteHalf<Stream>,
    me: usize,
    step: usize,
    rate: f64,
    dur: Duration,
    to: Arc<Vec<String>>,
    sent_to: Arc<Vec<AtomicU64>>,
) -> (WriteHalf<Stream>, u64) {
    use std::io::Write;
    let per = Duration::from_secs_f64(1.0 / rate.max(1e-6));
    let start = Instant::now() + per.mul_f64(rand::random::<f64>());
    let end = start + dur;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut due: u64 = 0;
    let mut sent: u64 = 0;
    loop {
        let next = start + per.mul_f64(due as f64);
        if next >= end {
            break;
        }
        tokio::time::sleep_until(next.into()).await;
        let now = Instant::now();
        buf.clear();
        while start + per.mul_f64(due as f64) <= now && buf.len() < 64 * 1024 {
            let r = (me + due as usize) % to.len();
            let _ = write!(
                buf,
                "<message to='{}' type='chat' id='o{step}-{me}-{due}'><body>o{step} {me} {due}</body></message>",
                to[r]
            );
            sent_to[r].fetch_add(1, Ordering::Relaxed);
            due += 1;
        }
        let n = due - sent;
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        sent += n;
    }
    (wr, sent)
}

/// Wait until the server's CPU (and that of `also` and its children, a database
/// server) stays under 5 % of a core for 300 ms; returns when it went quiet (or the
/// timeout's end).
async fn wait_quiet(pid: Option<u32>, also: Option<u32>, timeout: Duration) -> Instant {
    let Some(pid) = pid else {
        tokio::time::sleep(Duration::from_secs(5)).await;
        return Instant::now();
    };
    let cpu_now = || {
        sample(pid).map(|s| s.cpu).unwrap_or_default()
            + also.map(crate::procstat::tree_cpu).unwrap_or_default()
    };
    let end = Instant::now() + timeout;
    let tick = Duration::from_millis(100);
    let mut last = cpu_now();
    let mut quiet = 0;
    let mut quiet_since = Instant::now();
    while Instant::now() < end {
        let t = Instant::now();
        tokio::time::sleep(tick).await;
        let cpu = cpu_now();
        let busy = cpu.saturating_sub(last).as_secs_f64() / tick.as_secs_f64();
        last = cpu;
        if busy < 0.05 {
            if quiet == 0 {
                quiet_since = t;
            }
            quiet += 1;
            if quiet >= 3 {
                return quiet_since;
            }
        } else {
            quiet = 0;
        }
    }
    Instant::now()
}

/// Log recipient `n` in, send presence, and count the messages of `step` it is given
/// (of any step with `None`), until `expect` arrived or nothing came for a while (ten
/// seconds before the first message: a loaded server may take that long to start).
async fn collect(env: &Env, n: u64, step: Option<usize>, expect: u64) -> Result<u64, Error> {
    let t = &env.target;
    let mut c = tokio::time::timeout(env.login_timeout, Conn::login(t, n, "collect"))
        .await
        .map_err(|_| Error::Timeout("login"))??;
    c.send(b"<presence/>").await?;
    let tag = match step {
        Some(step) => format!("o{step} "),
        None => "o".to_string(),
    };
    let mut got = 0u64;
    while got < expect {
        let quiet = Duration::from_secs(if got == 0 { 10 } else { 3 });
        let el = match tokio::time::timeout(quiet, c.next_element()).await {
            Ok(r) => r?,
            Err(_) => break,
        };
        if xml::local_name(&el) != b"message" {
            continue;
        }
        let body = xml::child(&el, "body").map(xml::text).unwrap_or_default();
        if body.starts_with(tag.as_bytes()) {
            got += 1;
        }
    }
    c.close(Duration::from_secs(5)).await;
    Ok(got)
}

pub async fn offline(env: &Env, a: &OfflineArgs) -> Report {
    let t = &env.target;
    let mut r = Report::new("offline", &env.label, &t.addr.to_string());
    r.param("senders", a.senders);
    r.param("recipients", a.recipients);
    r.param("step_s", a.step.as_secs_f64());
    r.param(
        "rates",
        a.rates
            .iter()
            .map(|x| format!("{x}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    let recipients: Vec<u64> = (0..a.recipients as u64)
        .map(|i| a.first + a.senders as u64 + i)
        .collect();
    let to = Arc::new(
        recipients
            .iter()
            .map(|&n| format!("{}@{}", t.user(n), t.domain))
            .collect::<Vec<_>>(),
    );
    // Clear what an earlier run left for the recipients (and fill the SCRAM cache).
    env.counters.set_phase("clearing");
    let mut set = JoinSet::new();
    let env_rc = Arc::new(EnvRef::new(env));
    for &n in &recipients {
        let e = env_rc.clone();
        set.spawn(async move { collect(&e.0, n, None, u64::MAX).await });
    }
    while set.join_next().await.is_some() {}
    env.counters.set_phase("senders login");
    let senders: Vec<u64> = (a.first..a.first + a.senders as u64).collect();
    let deadline = Instant::now() + a.ramp_timeout;
    let conns: Vec<Conn> = login_many(env, &senders, a.login_concurrency, deadline)
        .await
        .into_iter()
        .flatten()
        .collect();
    if conns.len() < senders.len() {
        r.metric(
            "sender_login_failures",
            (senders.len() - conns.len()) as f64,
            "",
            Better::Lower,
        );
        return r;
    }
    let bounces = Arc::new(Bounces {
        by_step: (0..a.rates.len()).map(|_| AtomicU64::new(0)).collect(),
        shown: AtomicU64::new(0),
    });
    let mut writers: Vec<Option<WriteHalf<Stream>>> = Vec::new();
    let mut readers = JoinSet::new();
    for c in conns {
        let (rd, wr) = tokio::io::split(c.io);
        readers.spawn(bounce_reader(rd, c.scan, bounces.clone()));
        writers.push(Some(wr));
    }
    let (mut bounced_all, mut lost_all, mut best_rate) = (0u64, 0u64, 0f64);
    for (step, &rate) in a.rates.iter().enumerate() {
        env.counters.set_phase(&format!("offline {rate}/s"));
        let sent_to: Arc<Vec<AtomicU64>> =
            Arc::new((0..recipients.len()).map(|_| AtomicU64::new(0)).collect());
        let m0 = Mark::now(env.server_pid);
        let t0 = Instant::now();
        let mut set = JoinSet::new();
        for (me, w) in writers.iter_mut().enumerate() {
            let Some(wr) = w.take() else { continue };
            set.spawn(send_step(
                wr,
                me,
                step,
                rate / a.senders as f64,
                a.step,
                to.clone(),
                sent_to.clone(),
            ));
        }
        let mut sent = 0u64;
        let mut back = Vec::new();
        while let Some(j) = set.join_next().await {
            if let Ok((wr, n)) = j {
                sent += n;
                back.push(wr);
            }
        }
        for (w, wr) in writers.iter_mut().zip(back) {
            *w = Some(wr);
        }
        env.counters.sent.fetch_add(sent, Ordering::Relaxed);
        let sending = t0.elapsed();
        let quiet_at = wait_quiet(env.server_pid, a.quiet_pid, a.settle_timeout).await;
        let m1 = Mark::now(env.server_pid);
        // late bounces arrive with the quiet period; the collection comes after
        env.counters.set_phase(&format!("collect {rate}/s"));
        let mut set = JoinSet::new();
        for (i, &n) in recipients.iter().enumerate() {
            let e = env_rc.clone();
            let expect = sent_to[i].load(Ordering::Relaxed);
            set.spawn(async move { collect(&e.0, n, Some(step), expect).await });
        }
        let mut stored = 0u64;
        while let Some(j) = set.join_next().await {
            match j {
                Ok(Ok(n)) => stored += n,
                Ok(Err(e)) => env.counters.error(&e),
                Err(_) => {}
            }
        }
        env.counters.received.fetch_add(stored, Ordering::Relaxed);
        let bounced = bounces.by_step[step].load(Ordering::Relaxed);
        let lost = sent.saturating_sub(bounced + stored);
        let took = quiet_at.saturating_duration_since(t0).max(sending);
        let store_rate = stored as f64 / secs(took).max(1e-9);
        let k = format!("{}", rate as u64);
        r.metric(&format!("sent@{k}"), sent as f64, "", Better::None);
        r.metric(&format!("bounced@{k}"), bounced as f64, "", Better::Lower);
        r.metric(&format!("lost@{k}"), lost as f64, "", Better::Lower);
        r.metric(
            &format!("stored_per_s@{k}"),
            store_rate,
            "msgs/s",
            Better::Higher,
        );
        if let Some(cpu) = m1.since(&m0).server_cpu {
            r.metric(
                &format!("server_cpu_us_per_stored@{k}"),
                if stored > 0 {
                    cpu.as_secs_f64() * 1e6 / stored as f64
                } else {
                    f64::NAN
                },
                "µs",
                Better::Lower,
            );
        }
        bounced_all += bounced;
        lost_all += lost;
        if bounced == 0 && lost == 0 {
            best_rate = best_rate.max(store_rate);
        }
        eprintln!(
            "xmppd-load: offline step {rate}/s: sent {sent} bounced {bounced} stored {stored} lost {lost}, {store_rate:.0} stored/s"
        );
        // the server fell well behind: higher rates only take longer
        if store_rate < 0.7 * rate {
            break;
        }
    }
    // What a step's collection missed but is still stored (it came late) is not lost.
    env.counters.set_phase("sweep");
    let mut set = JoinSet::new();
    for &n in &recipients {
        let e = env_rc.clone();
        set.spawn(async move { collect(&e.0, n, None, u64::MAX).await });
    }
    let mut late = 0u64;
    while let Some(j) = set.join_next().await {
        if let Ok(Ok(n)) = j {
            late += n;
        }
    }
    r.metric("collected_late", late as f64, "", Better::None);
    let lost_all = lost_all.saturating_sub(late);
    r.errors = env.counters.errors();
    r.metric(
        "stored_per_s_max",
        best_rate,
        "msgs/s (no bounce, no loss)",
        Better::Higher,
    );
    r.metric("bounced", bounced_all as f64, "", Better::Lower);
    r.metric("lost", lost_all as f64, "", Better::Lower);
    for w in writers.into_iter().flatten() {
        let mut w = w;
        let _ = w.write_all(b"</stream:stream>").await;
        let _ = w.flush().await;
    }
    readers.abort_all();
    r
}

/// What a spawned collection needs of the scenario's environment.
struct EnvRef(Env);

impl EnvRef {
    fn new(env: &Env) -> Self {
        EnvRef(Env {
            target: env.target.clone(),
            counters: env.counters.clone(),
            server_pid: env.server_pid,
            login_timeout: env.login_timeout,
            label: env.label.clone(),
        })
    }
}

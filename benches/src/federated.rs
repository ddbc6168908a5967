//! The federated chat scenario: senders logged in on server A (`--host`, `--domain`)
//! write to receivers logged in on server B (`--peer-host`, `--peer-domain`), so every
//! message crosses the server-to-server link between A and B. Open loop at a total
//! rate; measures messages delivered per second, latency (send to receipt, one driver
//! clock) and the CPU of both servers per delivered message.

use crate::chat::{Lane, ReaderOut, Window, address_of, chat_reader, chat_tally, chat_writer};
use crate::client::{Conn, Error, Stream};
use crate::procstat::{Mark, sample};
use crate::report::{Better, Report};
use crate::scenarios::{
    Counters, Env, Phase, close_later, latency_histogram, login_many, ms, now_ns, secs,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use xmppd_bench::xml;

pub struct FederatedArgs {
    pub pairs: usize,
    pub first: u64,
    /// Total messages/s over all senders.
    pub rate: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub payload: usize,
    pub login_concurrency: usize,
    pub ramp_timeout: Duration,
    /// How long the first message of every pair may take (the servers set up their
    /// link: connect, TLS, dialback).
    pub link_timeout: Duration,
}

/// CPU time of a process between two samples, if both were read.
fn cpu_between(pid: Option<u32>, a: Option<Duration>) -> Option<Duration> {
    let b = pid.and_then(sample)?.cpu;
    Some(b.saturating_sub(a?))
}

/// Each sender writes one message to its receiver; wait until every receiver got it
/// (the link between the servers is up and every route is warm). Returns the pairs that
/// made it; the others are closed.
async fn first_messages(
    k: &Arc<Counters>,
    pairs: Vec<(Conn, Conn)>,
    limit: Duration,
) -> Vec<(Conn, Conn)> {
    let mut set = JoinSet::new();
    for (i, (mut a, mut b)) in pairs.into_iter().enumerate() {
        set.spawn(async move {
            let to = address_of(&b, false);
            let msg = format!(
                "<message to='{to}' type='chat' id='first{i}'><body>{} first</body></message>",
                now_ns()
            );
            let r = async {
                a.send(msg.as_bytes()).await?;
                loop {
                    let el = b.next_element().await?;
                    if xml::local_name(&el) == b"message" && xml::child(&el, "body").is_some() {
                        return Ok::<_, Error>(());
                    }
                }
            };
            match tokio::time::timeout(limit, r).await {
                Ok(Ok(())) => Ok((a, b)),
                Ok(Err(e)) => Err((a, b, e)),
                Err(_) => Err((a, b, Error::Timeout("first federated message"))),
            }
        });
    }
    let mut out = Vec::new();
    while let Some(j) = set.join_next().await {
        match j {
            Ok(Ok(p)) => out.push(p),
            Ok(Err((a, b, e))) => {
                k.error(&e);
                close_later(a, None);
                close_later(b, None);
            }
            Err(_) => {}
        }
    }
    out
}

/// Hold a receiver's write half until the close phase, then end its stream.
async fn closer(mut wr: WriteHalf<Stream>, mut phase: watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Close).await;
    let _ = wr.write_all(b"</stream:stream>").await;
    let _ = wr.flush().await;
}

/// `env` is server A (the senders' server), `peer` server B (the receivers').
pub async fn federated(env: &Env, peer: &Env, a: &FederatedArgs) -> Report {
    let t = &env.target;
    let mut r = Report::new("federated", &env.label, &t.addr.to_string());
    r.param("pairs", a.pairs);
    r.param("rate_msgs_per_s", a.rate);
    r.param("duration_s", a.duration.as_secs_f64());
    r.param("warmup_s", a.warmup.as_secs_f64());
    r.param("payload", a.payload);
    r.param("mechanism", t.mech.name());
    r.param("sender_domain", &t.domain);
    r.param("receiver_domain", &peer.target.domain);
    r.param("peer", peer.target.addr);
    env.counters.set_phase("login A");
    let accounts: Vec<u64> = (0..a.pairs as u64).map(|i| a.first + i).collect();
    let deadline = Instant::now() + a.ramp_timeout;
    let senders = login_many(env, &accounts, a.login_concurrency, deadline).await;
    env.counters.set_phase("login B");
    let receivers = login_many(peer, &accounts, a.login_concurrency, deadline).await;
    let mut pairs = Vec::new();
    for (x, y) in senders.into_iter().zip(receivers) {
        match (x, y) {
            (Some(x), Some(y)) => pairs.push((x, y)),
            (Some(c), None) | (None, Some(c)) => close_later(c, None),
            (None, None) => {}
        }
    }
    env.counters.set_phase("first messages");
    let pairs = first_messages(&env.counters, pairs, a.link_timeout).await;
    r.param("active_pairs", pairs.len());
    if pairs.is_empty() {
        eprintln!("xmppd-load: no pair could exchange a federated message");
        r.errors = env.counters.errors();
        return r;
    }
    // the first messages are not part of the tally
    env.counters.sent.store(0, Ordering::Relaxed);
    env.counters.received.store(0, Ordering::Relaxed);
    env.counters.msg_errors.store(0, Ordering::Relaxed);
    let (ptx, prx) = watch::channel(Phase::Run);
    let start = Instant::now();
    let w0 = now_ns() + a.warmup.as_nanos() as u64;
    let win = Arc::new(Window {
        from_ns: w0,
        to_ns: w0 + a.duration.as_nanos() as u64,
    });
    let hard_end = start + a.warmup + a.duration + a.drain + Duration::from_secs(10);
    let per_sender = a.rate / pairs.len() as f64;
    // a generous cap on messages in flight per pair: a stalled link cannot make the
    // driver queue forever
    let credits = ((per_sender * 10.0) as usize).clamp(1000, 100_000);
    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    env.counters.set_phase("warm-up");
    for (x, y) in pairs {
        let lane = Arc::new(Lane {
            credits: Semaphore::new(credits),
        });
        let to = address_of(&y, false);
        let (xr, xw) = tokio::io::split(x.io);
        let (yr, yw) = tokio::io::split(y.io);
        // the sender's reader only sees error replies; the receiver's counts deliveries
        readers.spawn(chat_reader(
            xr,
            x.scan,
            lane.clone(),
            lane.clone(),
            env.counters.clone(),
            win.clone(),
            hard_end,
        ));
        readers.spawn(chat_reader(
            yr,
            y.scan,
            lane.clone(),
            lane.clone(),
            env.counters.clone(),
            win.clone(),
            hard_end,
        ));
        writers.spawn(chat_writer(
            xw,
            to,
            lane,
            env.counters.clone(),
            prx.clone(),
            Some(per_sender),
            a.payload,
            16,
            start,
        ));
        writers.spawn(closer(yw, prx.clone()));
    }
    tokio::time::sleep_until((start + a.warmup).into()).await;
    env.counters.set_phase("measure");
    let m0 = Mark::now(env.server_pid);
    let b0 = peer.server_pid.and_then(sample).map(|s| s.cpu);
    tokio::time::sleep_until((start + a.warmup + a.duration).into()).await;
    let m1 = Mark::now(env.server_pid);
    let b_cpu = cpu_between(peer.server_pid, b0);
    let _ = ptx.send(Phase::Stop);
    crate::chat::drain(&env.counters, a.drain).await;
    env.counters.set_phase("close");
    let _ = ptx.send(Phase::Close);
    let close_end = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(_)) = tokio::time::timeout_at(close_end.into(), writers.join_next()).await {}
    writers.abort_all();
    let mut hist = latency_histogram();
    let mut delivered = 0u64;
    loop {
        match tokio::time::timeout_at(close_end.into(), readers.join_next()).await {
            Ok(Some(Ok(ReaderOut { hist: h, in_window }))) => {
                let _ = hist.add(&h);
                delivered += in_window;
            }
            Ok(Some(Err(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    readers.abort_all();
    let window = m1.at - m0.at;
    r.metric(
        "msgs_per_s",
        delivered as f64 / secs(window),
        "msg/s",
        Better::Higher,
    );
    r.metric("latency_p50_ms", ms(&hist, 0.5), "ms", Better::Lower);
    r.metric("latency_p99_ms", ms(&hist, 0.99), "ms", Better::Lower);
    r.metric("latency_p999_ms", ms(&hist, 0.999), "ms", Better::Lower);
    let d = m1.since(&m0);
    let per = |c: Duration| {
        if delivered > 0 {
            c.as_secs_f64() * 1e6 / delivered as f64
        } else {
            f64::NAN
        }
    };
    if let (Some(ca), Some(cb)) = (d.server_cpu, b_cpu) {
        r.metric("cpu_us_per_msg_both", per(ca + cb), "µs", Better::Lower);
        r.metric("cpu_us_per_msg_sender_side", per(ca), "µs", Better::Lower);
        r.metric("cpu_us_per_msg_receiver_side", per(cb), "µs", Better::Lower);
        let w = secs(window).max(1e-9);
        r.metric(
            "cpu_pct_both",
            (ca + cb).as_secs_f64() * 100.0 / w,
            "% of one core",
            Better::None,
        );
    }
    r.metric(
        "driver_cpu_pct",
        d.driver_cpu.as_secs_f64() * 100.0 / secs(window).max(1e-9),
        "% of one core",
        Better::None,
    );
    r.metric(
        "skipped_sends",
        env.counters.skipped.load(Ordering::Relaxed) as f64,
        "",
        Better::Lower,
    );
    chat_tally(&mut r, env);
    r
}

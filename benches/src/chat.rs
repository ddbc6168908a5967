//! The chat scenario: pairs of clients exchanging messages, closed or open loop, and
//! the pieces `chat --single` (ping_pong.rs) shares with it.

use crate::client::{Conn, Error, Stream};
use crate::procstat::Mark;
use crate::report::{Better, Report};
use crate::scenarios::{
    Counters, Env, Phase, close_later, cpu_metrics, latency_histogram, login_many, ms, now_ns, secs,
};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use xmppd_bench::xml::{self, Item, Scanner};

pub struct ChatArgs {
    pub pairs: usize,
    pub first: u64,
    pub window: usize,
    /// Open loop at this total rate (messages/s, both directions together).
    pub rate: Option<f64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub payload: usize,
    pub batch: usize,
    pub to_bare: bool,
    pub pairing: Pairing,
    pub login_concurrency: usize,
    pub ramp_timeout: Duration,
}

/// Which logged-in sessions chat with each other (sessions are numbered in login order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pairing {
    /// Session 2i with 2i+1.
    Adjacent,
    /// Session i with i+pairs. A server that spreads connections round-robin over an
    /// even number of threads puts both on the same thread when the logins arrive in
    /// order (`--login-concurrency 1`); `adjacent` then puts them on different threads.
    Split,
}

/// One direction of a pair: what the sender may still put in flight.
pub(crate) struct Lane {
    pub credits: Semaphore,
}

/// The measurement window in driver timestamps (`now_ns`).
pub(crate) struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
}

impl Window {
    pub fn contains(&self, ns: u64) -> bool {
        ns >= self.from_ns && ns <= self.to_ns
    }
}

/// Parse "TIMESTAMP SEQ" from a body.
pub(crate) fn body_stamp(el: &[u8]) -> Option<u64> {
    let body = xml::text(xml::child(el, "body")?);
    let end = body
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(body.len());
    std::str::from_utf8(&body[..end]).ok()?.parse().ok()
}

pub(crate) struct ReaderOut {
    pub hist: Histogram<u64>,
    pub in_window: u64,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn chat_reader(
    mut rd: ReadHalf<Stream>,
    mut scan: Scanner,
    lane_in: Arc<Lane>,
    lane_out: Arc<Lane>,
    k: Arc<Counters>,
    win: Arc<Window>,
    hard_end: Instant,
) -> ReaderOut {
    let mut out = ReaderOut {
        hist: latency_histogram(),
        in_window: 0,
    };
    'outer: loop {
        loop {
            let item = match scan.next_item() {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) => {
                    k.error(&Error::from(e));
                    break 'outer;
                }
            };
            match item {
                Item::Element(range) => {
                    let el = scan.slice(range);
                    if xml::local_name(el) != b"message" {
                        continue;
                    }
                    if xml::attr(el, "type") == Some(b"error") {
                        k.msg_errors.fetch_add(1, Ordering::Relaxed);
                        lane_out.credits.add_permits(1);
                        continue;
                    }
                    let Some(ts) = body_stamp(el) else { continue };
                    let now = now_ns();
                    k.received.fetch_add(1, Ordering::Relaxed);
                    lane_in.credits.add_permits(1);
                    if win.contains(now) {
                        out.in_window += 1;
                        let us = now.saturating_sub(ts) / 1000;
                        let _ = out.hist.record(us.max(1));
                    }
                }
                Item::End => break 'outer,
                Item::Header(_) => {}
            }
        }
        let buf = scan.buffer();
        tokio::select! {
            n = rd.read_buf(buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(hard_end.into()) => break,
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn chat_writer(
    mut wr: WriteHalf<Stream>,
    to: String,
    lane: Arc<Lane>,
    k: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
    rate: Option<f64>,
    payload: usize,
    batch: usize,
    start: Instant,
) {
    let pad = "x".repeat(payload);
    let mut buf = Vec::with_capacity(batch * (160 + payload));
    let mut seq: u64 = 0;
    let push = |buf: &mut Vec<u8>, stamp: u64, seq: u64| {
        use std::io::Write;
        let _ = write!(
            buf,
            "<message to='{to}' type='chat' id='m{seq}'><body>{stamp} {seq}{pad}</body></message>"
        );
    };
    // Open loop: message k is due at start + k/rate (plus a random phase so that the
    // senders do not fire together). A late message is stamped with its due time, so
    // a late send shows up as latency (no coordinated omission). tokio's timer wakes
    // on millisecond ticks, so the writer wakes up to one tick early and also sends
    // what falls due within the next tick, stamped with the time it is really sent:
    // the driver's timer granularity is not counted as the server's latency.
    let tick = Duration::from_millis(1);
    let period = rate.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-6)));
    let offset = period
        .map(|p| p.mul_f64(rand::random::<f64>()))
        .unwrap_or_default();
    let base = start + offset;
    let mut due: u64 = 0;
    loop {
        if *phase.borrow() != Phase::Run {
            break;
        }
        buf.clear();
        let mut n = 0u64;
        match period {
            None => {
                let permit = tokio::select! {
                    p = lane.credits.acquire() => p,
                    _ = phase.changed() => break,
                };
                let Ok(p) = permit else { break };
                p.forget();
                n = 1;
                while (n as usize) < batch {
                    match lane.credits.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                let now = now_ns();
                for _ in 0..n {
                    push(&mut buf, now, seq);
                    seq += 1;
                }
            }
            Some(per) => {
                let next = base + per.mul_f64(due as f64);
                let wake = next.checked_sub(tick).unwrap_or(next);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    _ = phase.changed() => break,
                }
                let now = Instant::now();
                let ns_now = now_ns();
                while (n as usize) < batch {
                    let at = base + per.mul_f64(due as f64);
                    if at > now + tick {
                        break;
                    }
                    due += 1;
                    // the due time as a driver timestamp when late, else the send time
                    let stamp =
                        ns_now.saturating_sub(now.saturating_duration_since(at).as_nanos() as u64);
                    match lane.credits.try_acquire() {
                        Ok(p) => {
                            p.forget();
                            push(&mut buf, stamp, seq);
                            seq += 1;
                            n += 1;
                        }
                        Err(_) => {
                            // too much in flight: the server is not keeping up
                            k.skipped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                if n == 0 {
                    continue;
                }
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            k.error(&Error::Closed);
            return;
        }
        k.sent.fetch_add(n, Ordering::Relaxed);
    }
    // wait for the close phase, then close our stream
    let _ = phase.wait_for(|p| *p == Phase::Close).await;
    let _ = wr.write_all(b"</stream:stream>").await;
    let _ = wr.flush().await;
}

pub async fn chat(env: &Env, a: &ChatArgs) -> Report {
    let t = &env.target;
    let tag = if a.rate.is_some() {
        "chat-open"
    } else {
        "chat"
    };
    let mut r = Report::new(tag, &env.label, &t.addr.to_string());
    r.param("pairs", a.pairs);
    match a.rate {
        Some(rate) => r.param("rate_msgs_per_s", rate),
        None => r.param("window", a.window),
    }
    r.param("duration_s", a.duration.as_secs_f64());
    r.param("warmup_s", a.warmup.as_secs_f64());
    r.param("payload", a.payload);
    r.param("mechanism", t.mech.name());
    r.param("to", if a.to_bare { "bare" } else { "full" });
    let Some(pairs) = login_pairs(env, a, &mut r).await else {
        return r;
    };
    let (ptx, prx) = watch::channel(Phase::Run);
    let start = Instant::now();
    let w0 = now_ns() + a.warmup.as_nanos() as u64;
    let win = Arc::new(Window {
        from_ns: w0,
        to_ns: w0 + a.duration.as_nanos() as u64,
    });
    let hard_end = start + a.warmup + a.duration + a.drain + Duration::from_secs(10);
    let credits = match a.rate {
        None => a.window.max(1),
        // open loop: a generous cap so a stalled server cannot make the driver queue forever
        Some(rate) => ((rate / (2.0 * pairs.len() as f64)) as usize * 2).clamp(1000, 100_000),
    };
    let per_sender = a.rate.map(|r| r / (2.0 * pairs.len() as f64));
    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    env.counters.set_phase("chat warm-up");
    for (x, y) in pairs {
        let ab = Arc::new(Lane {
            credits: Semaphore::new(credits),
        });
        let ba = Arc::new(Lane {
            credits: Semaphore::new(credits),
        });
        let (to_y, to_x) = (address_of(&y, a.to_bare), address_of(&x, a.to_bare));
        for (c, to, lane_out, lane_in) in [(x, to_y, ab.clone(), ba.clone()), (y, to_x, ba, ab)] {
            let (rd, wr) = tokio::io::split(c.io);
            readers.spawn(chat_reader(
                rd,
                c.scan,
                lane_in,
                lane_out.clone(),
                env.counters.clone(),
                win.clone(),
                hard_end,
            ));
            writers.spawn(chat_writer(
                wr,
                to,
                lane_out,
                env.counters.clone(),
                prx.clone(),
                per_sender,
                a.payload,
                a.batch.max(1),
                start,
            ));
        }
    }
    // measurement window marks
    tokio::time::sleep_until((start + a.warmup).into()).await;
    env.counters.set_phase("chat");
    let m0 = Mark::now(env.server_pid);
    tokio::time::sleep_until((start + a.warmup + a.duration).into()).await;
    let m1 = Mark::now(env.server_pid);
    let _ = ptx.send(Phase::Stop);
    drain(&env.counters, a.drain).await;
    env.counters.set_phase("chat close");
    let _ = ptx.send(Phase::Close);
    let close_end = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(_)) = tokio::time::timeout_at(close_end.into(), writers.join_next()).await {}
    writers.abort_all();
    let mut hist = latency_histogram();
    let mut in_window = 0u64;
    loop {
        match tokio::time::timeout_at(close_end.into(), readers.join_next()).await {
            Ok(Some(Ok(o))) => {
                let _ = hist.add(&o.hist);
                in_window += o.in_window;
            }
            Ok(Some(Err(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    readers.abort_all();
    chat_metrics(&mut r, &hist, in_window, &m0, &m1);
    if a.rate.is_some() {
        r.metric(
            "skipped_sends",
            env.counters.skipped.load(Ordering::Relaxed) as f64,
            "",
            Better::Lower,
        );
    }
    chat_tally(&mut r, env);
    r
}

/// Log in `2 × pairs` accounts and pair them up (the first with the second, ...);
/// a session whose partner failed is closed. `None` (with the errors in the report)
/// when no pair could log in.
pub(crate) async fn login_pairs(
    env: &Env,
    a: &ChatArgs,
    r: &mut Report,
) -> Option<Vec<(Conn, Conn)>> {
    env.counters.set_phase("chat login");
    let accounts: Vec<u64> = (0..a.pairs as u64 * 2).map(|i| a.first + i).collect();
    let deadline = Instant::now() + a.ramp_timeout;
    let conns = login_many(env, &accounts, a.login_concurrency, deadline).await;
    let ok = conns.iter().filter(|c| c.is_some()).count();
    r.param("sessions", ok);
    r.param("pairing", format!("{:?}", a.pairing).to_lowercase());
    let conns: Vec<(Option<Conn>, Option<Conn>)> = match a.pairing {
        Pairing::Adjacent => {
            let mut out = Vec::new();
            let mut it = conns.into_iter();
            while let (Some(x), Some(y)) = (it.next(), it.next()) {
                out.push((x, y));
            }
            out
        }
        Pairing::Split => {
            let mut first = conns;
            let second = first.split_off(first.len() / 2);
            first.into_iter().zip(second).collect()
        }
    };
    // keep only complete pairs
    let mut pairs: Vec<(Conn, Conn)> = Vec::new();
    for (x, y) in conns {
        match (x, y) {
            (Some(x), Some(y)) => pairs.push((x, y)),
            (Some(c), None) | (None, Some(c)) => close_later(c, None),
            (None, None) => {}
        }
    }
    if pairs.is_empty() {
        eprintln!("xmppd-load: no pair could log in");
        r.errors = env.counters.errors();
        return None;
    }
    r.param("active_pairs", pairs.len());
    Some(pairs)
}

/// The partner's address as messages carry it: full JID, or bare with `--to-bare`.
pub(crate) fn address_of(c: &Conn, to_bare: bool) -> String {
    let j = if to_bare {
        c.jid.split('/').next().unwrap_or(&c.jid)
    } else {
        &c.jid
    };
    xml::escape(j)
}

/// After the senders stopped: wait (at most `limit`) until every message sent has
/// been received or returned as an error.
pub(crate) async fn drain(k: &Counters, limit: Duration) {
    k.set_phase("chat drain");
    let drain_end = Instant::now() + limit;
    loop {
        let settled = k.received.load(Ordering::Relaxed) + k.msg_errors.load(Ordering::Relaxed)
            >= k.sent.load(Ordering::Relaxed);
        if settled || Instant::now() >= drain_end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Throughput, latency, CPU and memory of a chat measurement window.
pub(crate) fn chat_metrics(
    r: &mut Report,
    hist: &Histogram<u64>,
    in_window: u64,
    m0: &Mark,
    m1: &Mark,
) {
    let window = m1.at - m0.at;
    r.metric(
        "msgs_per_s",
        in_window as f64 / secs(window),
        "msg/s",
        Better::Higher,
    );
    r.metric("latency_p50_ms", ms(hist, 0.5), "ms", Better::Lower);
    r.metric("latency_p99_ms", ms(hist, 0.99), "ms", Better::Lower);
    r.metric("latency_p999_ms", ms(hist, 0.999), "ms", Better::Lower);
    r.metric(
        "latency_max_ms",
        if hist.is_empty() {
            f64::NAN
        } else {
            hist.max() as f64 / 1000.0
        },
        "ms",
        Better::Lower,
    );
    cpu_metrics(r, m1.since(m0), window, in_window, "msg");
    if let Some(s) = m1.server {
        r.metric(
            "server_rss_mib",
            s.rss_kib as f64 / 1024.0,
            "MiB",
            Better::None,
        );
    }
}

/// Sent, received, error replies and lost over the whole run, and the error kinds.
pub(crate) fn chat_tally(r: &mut Report, env: &Env) {
    let k = &env.counters;
    let sent = k.sent.load(Ordering::Relaxed);
    let received = k.received.load(Ordering::Relaxed);
    let errors = k.msg_errors.load(Ordering::Relaxed);
    r.metric("sent", sent as f64, "", Better::None);
    r.metric("received", received as f64, "", Better::None);
    r.metric("error_replies", errors as f64, "", Better::Lower);
    r.metric(
        "lost",
        sent.saturating_sub(received + errors) as f64,
        "",
        Better::Lower,
    );
    r.errors = k.errors();
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_stamp_parses_digits() {
        let el = b"<message from='a@b/c'><body>123456 7xx</body></message>";
        assert_eq!(super::body_stamp(el), Some(123456));
        assert_eq!(
            super::body_stamp(b"<message><body>x</body></message>"),
            None
        );
        assert_eq!(super::body_stamp(b"<message/>"), None);
    }
}

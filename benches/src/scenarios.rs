//! The scenarios: login, chat, idle, and account registration.

use crate::client::{Conn, Error, Stream, Target};
use crate::procstat::{self, Mark};
use crate::report::{Better, Report};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use xmppd_bench::xml::{self, Item, Scanner};

/// Nanoseconds since the driver started (message timestamps; one clock for both ends).
pub fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Live counters, shown once a second and summed up at the end.
#[derive(Default)]
pub struct Counters {
    pub online: AtomicU64,
    pub logins: AtomicU64,
    pub login_failures: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub msg_errors: AtomicU64,
    /// Open loop: sends skipped because too many messages were in flight.
    pub skipped: AtomicU64,
    /// Open loop, one message in flight (`chat --single`): turns that came more than a
    /// timer tick after the due time of the message to send (the partner's previous
    /// message arrived late).
    pub late: AtomicU64,
    pub phase: Mutex<String>,
    errors: Mutex<BTreeMap<String, u64>>,
    shown: AtomicUsize,
}

impl Counters {
    pub fn set_phase(&self, p: &str) {
        if let Ok(mut g) = self.phase.lock() {
            *g = p.to_string();
        }
    }

    /// Count a failure; the first few are printed in full.
    pub fn error(&self, e: &Error) {
        if let Ok(mut m) = self.errors.lock() {
            *m.entry(e.kind().to_string()).or_default() += 1;
        }
        if self.shown.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("xmppd-load: {e}");
        }
    }

    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// Everything every scenario gets.
pub struct Env {
    pub target: Arc<Target>,
    pub counters: Arc<Counters>,
    pub server_pid: Option<u32>,
    pub login_timeout: Duration,
    pub label: String,
}

pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

pub(crate) fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Add the CPU figures of a measurement window (per unit of work and in percent).
pub(crate) fn cpu_metrics(
    r: &mut Report,
    d: procstat::Delta,
    window: Duration,
    work: u64,
    per: &str,
) {
    let w = secs(window).max(1e-9);
    if let Some(s) = d.server_cpu {
        r.metric(
            &format!("server_cpu_us_per_{per}"),
            if work > 0 {
                s.as_secs_f64() * 1e6 / work as f64
            } else {
                f64::NAN
            },
            "µs",
            Better::Lower,
        );
        r.metric(
            "server_cpu_pct",
            s.as_secs_f64() * 100.0 / w,
            "% of one core",
            Better::None,
        );
    }
    r.metric(
        &format!("driver_cpu_us_per_{per}"),
        if work > 0 {
            d.driver_cpu.as_secs_f64() * 1e6 / work as f64
        } else {
            f64::NAN
        },
        "µs",
        Better::None,
    );
    r.metric(
        "driver_cpu_pct",
        d.driver_cpu.as_secs_f64() * 100.0 / w,
        "% of one core",
        Better::None,
    );
}

const PING: &str = "<ping xmlns='urn:xmpp:ping'/>";

/// Log in, send initial presence, and (with `ping`) wait for a ping answer from the
/// server, which tells that the presence was processed.
async fn login_ready(t: &Target, n: u64, resource: &str, ping: bool) -> Result<Conn, Error> {
    let mut c = Conn::login(t, n, resource).await?;
    c.send(b"<presence/>").await?;
    if ping {
        let iq = format!(
            "<iq type='get' id='ping1' to='{}'>{PING}</iq>",
            xml::escape(&t.domain)
        );
        c.send(iq.as_bytes()).await?;
        c.iq_reply("ping1").await?;
    }
    Ok(c)
}

/// Log accounts in with bounded concurrency; returns the sessions in `accounts` order
/// (`None` where the login failed).
pub(crate) async fn login_many(
    env: &Env,
    accounts: &[u64],
    concurrency: usize,
    deadline: Instant,
) -> Vec<Option<Conn>> {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, &n) in accounts.iter().enumerate() {
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => p,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        let Ok(permit) = permit else { break };
        let t = env.target.clone();
        let counters = env.counters.clone();
        let lt = env.login_timeout;
        set.spawn(async move {
            let res = format!("load{n}");
            let r = match tokio::time::timeout(lt, login_ready(&t, n, &res, true)).await {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout("login")),
            };
            drop(permit);
            match r {
                Ok(c) => {
                    counters.logins.fetch_add(1, Ordering::Relaxed);
                    counters.online.fetch_add(1, Ordering::Relaxed);
                    (i, Some(c))
                }
                Err(e) => {
                    counters.login_failures.fetch_add(1, Ordering::Relaxed);
                    counters.error(&e);
                    (i, None)
                }
            }
        });
    }
    let mut out: Vec<Option<Conn>> = (0..accounts.len()).map(|_| None).collect();
    loop {
        let joined = tokio::select! {
            j = set.join_next() => j,
            _ = tokio::time::sleep_until(deadline.into()) => {
                eprintln!("xmppd-load: login ramp deadline reached; abandoning the logins still running");
                set.abort_all();
                break;
            }
        };
        match joined {
            Some(Ok((i, c))) => out[i] = c,
            Some(Err(_)) => {}
            None => break,
        }
    }
    out
}

/// Close a stream in the background (the server's own close is awaited there).
pub(crate) fn close_later(mut c: Conn, online: Option<Arc<Counters>>) {
    tokio::spawn(async move {
        c.close(Duration::from_secs(5)).await;
        if let Some(k) = online {
            k.online.fetch_sub(1, Ordering::Relaxed);
        }
    });
}

// ---------------------------------------------------------------- login

pub struct LoginArgs {
    pub concurrency: usize,
    pub accounts: u64,
    pub first: u64,
    pub duration: Duration,
    pub prime: bool,
    pub ping: bool,
    pub ramp_timeout: Duration,
}

pub async fn login(env: &Env, a: &LoginArgs) -> Report {
    let t = &env.target;
    let mut r = Report::new("login", &env.label, &t.addr.to_string());
    r.param("concurrency", a.concurrency);
    r.param("accounts", a.accounts);
    r.param("duration_s", a.duration.as_secs_f64());
    r.param("mechanism", t.mech.name());
    r.param("starttls", t.starttls);
    r.param("ping_after_presence", a.ping);
    let all: Vec<u64> = (a.first..a.first + a.accounts).collect();
    if a.prime {
        // Every account once, so the salted passwords are cached in the driver and the
        // measured logins cost the driver only the protocol.
        env.counters.set_phase("prime");
        let deadline = Instant::now() + a.ramp_timeout;
        let conns = login_many(env, &all, a.concurrency, deadline).await;
        let ok = conns.iter().filter(|c| c.is_some()).count();
        for c in conns.into_iter().flatten() {
            close_later(c, Some(env.counters.clone()));
        }
        r.param("prime_ok", ok);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.counters.set_phase("login");
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + a.duration;
    let m0 = Mark::now(env.server_pid);
    let mut set = JoinSet::new();
    for _ in 0..a.concurrency.max(1) {
        let t = env.target.clone();
        let k = env.counters.clone();
        let next = next.clone();
        let lt = env.login_timeout;
        let (accounts, first, ping) = (a.accounts.max(1), a.first, a.ping);
        set.spawn(async move {
            let mut h = latency_histogram();
            let (mut ok, mut fail) = (0u64, 0u64);
            while Instant::now() < end {
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let n = first + seq % accounts;
                let res = format!("l{seq}");
                let t0 = Instant::now();
                let rr = match tokio::time::timeout(lt, login_ready(&t, n, &res, ping)).await {
                    Ok(r) => r,
                    Err(_) => Err(Error::Timeout("login")),
                };
                let done = Instant::now();
                match rr {
                    Ok(c) => {
                        k.logins.fetch_add(1, Ordering::Relaxed);
                        if done <= end {
                            ok += 1;
                            let _ = h.record((done - t0).as_micros().max(1) as u64);
                        }
                        k.online.fetch_add(1, Ordering::Relaxed);
                        close_later(c, Some(k.clone()));
                    }
                    Err(e) => {
                        k.login_failures.fetch_add(1, Ordering::Relaxed);
                        k.error(&e);
                        fail += 1;
                        // do not spin on a server that refuses connections
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (h, ok, fail)
        });
    }
    let mut h = latency_histogram();
    let (mut ok, mut fail) = (0u64, 0u64);
    // The workers end by themselves once `end` passes (a login in flight is bounded
    // by the login timeout).
    while let Some(j) = set.join_next().await {
        if let Ok((hh, o, f)) = j {
            let _ = h.add(&hh);
            ok += o;
            fail += f;
        }
    }
    let m1 = Mark::now(env.server_pid);
    let window = a.duration;
    r.metric(
        "logins_per_s",
        ok as f64 / secs(window),
        "logins/s",
        Better::Higher,
    );
    r.metric("login_p50_ms", ms(&h, 0.5), "ms", Better::Lower);
    r.metric("login_p99_ms", ms(&h, 0.99), "ms", Better::Lower);
    r.metric("logins", ok as f64, "", Better::None);
    r.metric("login_failures", fail as f64, "", Better::Lower);
    cpu_metrics(&mut r, m1.since(&m0), window, ok, "login");
    if let Some(s) = m1.server {
        r.metric(
            "server_rss_mib",
            s.rss_kib as f64 / 1024.0,
            "MiB",
            Better::None,
        );
    }
    // let the background closes finish (bounded)
    let until = Instant::now() + Duration::from_secs(6);
    while env.counters.online.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    r.errors = env.counters.errors();
    r
}

// ---------------------------------------------------------------- chat

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Run,
    /// Stop sending; readers keep counting what is still in flight.
    Stop,
    /// Send `</stream:stream>`.
    Close,
}

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
struct Lane {
    credits: Semaphore,
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

struct ReaderOut {
    hist: Histogram<u64>,
    in_window: u64,
}

#[allow(clippy::too_many_arguments)]
async fn chat_reader(
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
async fn chat_writer(
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

// ---------------------------------------------------------------- idle

pub struct IdleArgs {
    pub sessions: usize,
    pub first: u64,
    pub concurrency: usize,
    pub settle: Duration,
    pub duration: Duration,
    pub ramp_timeout: Duration,
}

pub async fn idle(env: &Env, a: &IdleArgs) -> Report {
    let t = &env.target;
    let mut r = Report::new("idle", &env.label, &t.addr.to_string());
    r.param("sessions", a.sessions);
    r.param("settle_s", a.settle.as_secs_f64());
    r.param("duration_s", a.duration.as_secs_f64());
    r.param("mechanism", t.mech.name());
    let before = env.server_pid.and_then(procstat::sample);
    env.counters.set_phase("idle login");
    let accounts: Vec<u64> = (0..a.sessions as u64).map(|i| a.first + i).collect();
    let t0 = Instant::now();
    let conns = login_many(env, &accounts, a.concurrency, t0 + a.ramp_timeout).await;
    let ramp = t0.elapsed();
    let (ptx, prx) = watch::channel(Phase::Run);
    let mut set = JoinSet::new();
    let mut n = 0usize;
    for c in conns.into_iter().flatten() {
        n += 1;
        let mut phase = prx.clone();
        let k = env.counters.clone();
        set.spawn(async move {
            let mut c = c;
            // hold the session: read (and drop) whatever the server sends until told to close
            loop {
                let buf = c.scan.buffer();
                tokio::select! {
                    r = c.io.read_buf(buf) => match r {
                        Ok(0) | Err(_) => {
                            k.error(&Error::Closed);
                            k.online.fetch_sub(1, Ordering::Relaxed);
                            return;
                        }
                        Ok(_) => { while let Ok(Some(_)) = c.scan.next_item() {} }
                    },
                    _ = phase.wait_for(|p| *p == Phase::Close) => break,
                }
            }
            c.close(Duration::from_secs(5)).await;
            k.online.fetch_sub(1, Ordering::Relaxed);
        });
    }
    r.param("ramp_s", format!("{:.1}", ramp.as_secs_f64()));
    r.metric("sessions_up", n as f64, "", Better::Higher);
    r.metric(
        "logins_per_s_ramp",
        n as f64 / secs(ramp).max(1e-9),
        "logins/s",
        Better::Higher,
    );
    env.counters.set_phase("idle settle");
    tokio::time::sleep(a.settle).await;
    let m0 = Mark::now(env.server_pid);
    if let (Some(b), Some(s)) = (before, m0.server) {
        let per = (s.rss_kib as f64 - b.rss_kib as f64) / n.max(1) as f64;
        r.metric("server_kib_per_session", per, "KiB", Better::Lower);
        r.metric(
            "server_rss_before_mib",
            b.rss_kib as f64 / 1024.0,
            "MiB",
            Better::None,
        );
        r.metric(
            "server_rss_after_mib",
            s.rss_kib as f64 / 1024.0,
            "MiB",
            Better::None,
        );
    }
    env.counters.set_phase("idle hold");
    tokio::time::sleep(a.duration).await;
    let m1 = Mark::now(env.server_pid);
    let d = m1.since(&m0);
    let window = m1.at - m0.at;
    if let Some(s) = d.server_cpu {
        r.metric(
            "server_cpu_pct_idle",
            s.as_secs_f64() * 100.0 / secs(window),
            "% of one core",
            Better::Lower,
        );
    }
    r.metric(
        "driver_cpu_pct",
        d.driver_cpu.as_secs_f64() * 100.0 / secs(window),
        "% of one core",
        Better::None,
    );
    let still = env.counters.online.load(Ordering::Relaxed);
    r.metric("sessions_still_up", still as f64, "", Better::Higher);
    env.counters.set_phase("idle close");
    let _ = ptx.send(Phase::Close);
    let end = Instant::now() + Duration::from_secs(8);
    while let Ok(Some(_)) = tokio::time::timeout_at(end.into(), set.join_next()).await {}
    set.abort_all();
    r.errors = env.counters.errors();
    r
}

// ---------------------------------------------------------------- register

pub async fn register(env: &Env, first: u64, accounts: u64, concurrency: usize) -> Report {
    let t = &env.target;
    let mut r = Report::new("register", &env.label, &t.addr.to_string());
    r.param("accounts", accounts);
    env.counters.set_phase("register");
    let created = Arc::new(AtomicU64::new(0));
    let existed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(first));
    let start = Instant::now();
    let mut set = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (t, k, next) = (env.target.clone(), env.counters.clone(), next.clone());
        let (created, existed, failed) = (created.clone(), existed.clone(), failed.clone());
        let lt = env.login_timeout;
        set.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= first + accounts {
                    break;
                }
                let mut tries = 0;
                loop {
                    tries += 1;
                    let rr = match tokio::time::timeout(lt, Conn::register(&t, n)).await {
                        Ok(r) => r,
                        Err(_) => Err(Error::Timeout("register")),
                    };
                    match rr {
                        Ok(true) => created.fetch_add(1, Ordering::Relaxed),
                        Ok(false) => existed.fetch_add(1, Ordering::Relaxed),
                        Err(e) if tries < 3 => {
                            k.error(&e);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                        Err(e) => {
                            k.error(&e);
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    k.logins.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    let el = start.elapsed();
    let c = created.load(Ordering::Relaxed);
    r.metric("created", c as f64, "", Better::None);
    r.metric(
        "existed",
        existed.load(Ordering::Relaxed) as f64,
        "",
        Better::None,
    );
    r.metric(
        "failed",
        failed.load(Ordering::Relaxed) as f64,
        "",
        Better::Lower,
    );
    r.metric(
        "registrations_per_s",
        (c + existed.load(Ordering::Relaxed)) as f64 / secs(el).max(1e-9),
        "/s",
        Better::Higher,
    );
    r.errors = env.counters.errors();
    r
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

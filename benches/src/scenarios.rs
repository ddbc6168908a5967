//! The scenarios login, idle and account registration, and what every scenario shares
//! (counters, logins, CPU figures); chat is in chat.rs.

use crate::client::{Conn, Error, Target};
use crate::procstat::{self, Mark};
use crate::report::{Better, Report};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use xmppd_bench::xml;

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

// ---------------------------------------------------------------- phases

/// Where a run with held sessions is (chat, idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Run,
    /// Stop sending; readers keep counting what is still in flight.
    Stop,
    /// Send `</stream:stream>`.
    Close,
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

//! The room scenario: N occupants of one chat room (XEP-0045), each sending groupchat
//! messages open loop; every message is delivered to all N (the sender's copy is the
//! reflection). Measures deliveries per second, delivery latency and the server's CPU
//! per delivery.

use crate::chat::{Window, body_stamp};
use crate::client::{Conn, Error, Stream};
use crate::procstat::Mark;
use crate::report::{Better, Report};
use crate::scenarios::{
    Counters, Env, Phase, cpu_metrics, latency_histogram, login_many, ms, now_ns, secs,
};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use xmppd_bench::xml::{self, Item, Scanner};

pub struct RoomArgs {
    pub occupants: usize,
    pub first: u64,
    /// Messages per second into the room, all senders together.
    pub rate: f64,
    /// The room's bare JID; empty: `bench@conference.<domain>`.
    pub room: String,
    pub duration: Duration,
    pub warmup: Duration,
    pub drain: Duration,
    pub payload: usize,
    pub login_concurrency: usize,
    pub ramp_timeout: Duration,
}

fn join_stanza(room: &str, nick: &str) -> String {
    format!(
        "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
    )
}

/// Wait for the element that ends a join: the subject message (XEP-0045 §7.2.15); an
/// error presence fails the join.
async fn joined(c: &mut Conn) -> Result<(), Error> {
    loop {
        let el = c.next_element().await?;
        let name = xml::local_name(&el);
        if name == b"presence" && xml::attr(&el, "type") == Some(b"error") {
            return Err(Error::Protocol(format!(
                "join refused: {}",
                String::from_utf8_lossy(&el)
            )));
        }
        if name == b"message" && xml::child(&el, "subject").is_some() {
            return Ok(());
        }
    }
}

/// The first occupant creates the room (an instant room, §10.1.2) or finds it there.
async fn create(c: &mut Conn, room: &str) -> Result<(), Error> {
    c.send(join_stanza(room, "n0").as_bytes()).await?;
    joined(c).await?;
    let iq = format!(
        "<iq type='set' id='inst' to='{room}'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
    );
    c.send(iq.as_bytes()).await?;
    // an existing room may refuse (we are not its owner): it is open all the same
    c.iq_reply("inst").await.map(|_| ())
}

struct ReaderOut {
    hist: Histogram<u64>,
    in_window: u64,
}

async fn reader(
    mut rd: ReadHalf<Stream>,
    mut scan: Scanner,
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
                        continue;
                    }
                    let Some(ts) = body_stamp(el) else { continue };
                    let now = now_ns();
                    k.received.fetch_add(1, Ordering::Relaxed);
                    if win.contains(now) {
                        out.in_window += 1;
                        let _ = out.hist.record((now.saturating_sub(ts) / 1000).max(1));
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

/// Open loop: message k is due at start + offset + k/rate; a late one is stamped with
/// its due time, so lateness counts as latency.
async fn writer(
    mut wr: WriteHalf<Stream>,
    room: String,
    k: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
    rate: f64,
    payload: usize,
    start: Instant,
) {
    let pad = "x".repeat(payload);
    let per = Duration::from_secs_f64(1.0 / rate.max(1e-6));
    let base = start + per.mul_f64(rand::random::<f64>());
    let mut due: u64 = 0;
    let mut buf = Vec::new();
    while *phase.borrow() == Phase::Run {
        let at = base + per.mul_f64(due as f64);
        tokio::select! {
            _ = tokio::time::sleep_until(at.into()) => {}
            _ = phase.changed() => break,
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(at).as_nanos() as u64;
        let stamp = now_ns().saturating_sub(late);
        buf.clear();
        use std::io::Write;
        let _ = write!(
            buf,
            "<message to='{room}' type='groupchat'><body>{stamp} {due}{pad}</body></message>"
        );
        due += 1;
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            k.error(&Error::Closed);
            return;
        }
        k.sent.fetch_add(1, Ordering::Relaxed);
    }
    let _ = phase.wait_for(|p| *p == Phase::Close).await;
    let _ = wr.write_all(b"</stream:stream>").await;
    let _ = wr.flush().await;
}

pub async fn room(env: &Env, a: &RoomArgs) -> Report {
    let t = &env.target;
    let mut r = Report::new("room", &env.label, &t.addr.to_string());
    let room = if a.room.is_empty() {
        format!("bench@conference.{}", t.domain)
    } else {
        a.room.clone()
    };
    let room = xml::escape(&room);
    r.param("occupants", a.occupants);
    r.param("rate_msgs_per_s", a.rate);
    r.param("duration_s", a.duration.as_secs_f64());
    r.param("payload", a.payload);
    env.counters.set_phase("room login");
    let accounts: Vec<u64> = (0..a.occupants as u64).map(|i| a.first + i).collect();
    let deadline = Instant::now() + a.ramp_timeout;
    let mut conns: Vec<Conn> = login_many(env, &accounts, a.login_concurrency, deadline)
        .await
        .into_iter()
        .flatten()
        .collect();
    if conns.is_empty() {
        r.errors = env.counters.errors();
        return r;
    }
    env.counters.set_phase("room join");
    if let Err(e) = create(&mut conns[0], &room).await {
        env.counters.error(&e);
        r.errors = env.counters.errors();
        return r;
    }
    let sem = Arc::new(Semaphore::new(a.login_concurrency.max(1)));
    let mut set = JoinSet::new();
    let first = conns.remove(0);
    for (i, mut c) in conns.into_iter().enumerate() {
        let (sem, room, k) = (sem.clone(), room.clone(), env.counters.clone());
        set.spawn(async move {
            let _p = sem.acquire().await;
            let res = async {
                c.send(join_stanza(&room, &format!("n{}", i + 1)).as_bytes())
                    .await?;
                joined(&mut c).await
            };
            match tokio::time::timeout(Duration::from_secs(60), res).await {
                Ok(Ok(())) => Some(c),
                Ok(Err(e)) => {
                    k.error(&e);
                    None
                }
                Err(_) => {
                    k.error(&Error::Timeout("join"));
                    None
                }
            }
        });
    }
    let mut joined_conns = vec![first];
    while let Some(j) = set.join_next().await {
        if let Ok(Some(c)) = j {
            joined_conns.push(c);
        }
    }
    let n = joined_conns.len();
    r.param("joined", n);
    let (ptx, prx) = watch::channel(Phase::Run);
    let start = Instant::now();
    let w0 = now_ns() + a.warmup.as_nanos() as u64;
    let win = Arc::new(Window {
        from_ns: w0,
        to_ns: w0 + a.duration.as_nanos() as u64,
    });
    let hard_end = start + a.warmup + a.duration + a.drain + Duration::from_secs(10);
    let mut readers = JoinSet::new();
    let mut writers = JoinSet::new();
    env.counters.set_phase("room warm-up");
    for c in joined_conns {
        let (rd, wr) = tokio::io::split(c.io);
        readers.spawn(reader(
            rd,
            c.scan,
            env.counters.clone(),
            win.clone(),
            hard_end,
        ));
        writers.spawn(writer(
            wr,
            room.clone(),
            env.counters.clone(),
            prx.clone(),
            a.rate / n as f64,
            a.payload,
            start,
        ));
    }
    tokio::time::sleep_until((start + a.warmup).into()).await;
    env.counters.set_phase("room");
    let m0 = Mark::now(env.server_pid);
    tokio::time::sleep_until((start + a.warmup + a.duration).into()).await;
    let m1 = Mark::now(env.server_pid);
    let _ = ptx.send(Phase::Stop);
    // drain: every message sent is due once per occupant
    env.counters.set_phase("room drain");
    let k = &env.counters;
    let drain_end = Instant::now() + a.drain;
    while Instant::now() < drain_end
        && k.received.load(Ordering::Relaxed) + k.msg_errors.load(Ordering::Relaxed)
            < k.sent.load(Ordering::Relaxed) * n as u64
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = ptx.send(Phase::Close);
    let close_end = Instant::now() + Duration::from_secs(5);
    while let Ok(Some(_)) = tokio::time::timeout_at(close_end.into(), writers.join_next()).await {}
    writers.abort_all();
    let mut hist = latency_histogram();
    let mut in_window = 0u64;
    while let Ok(Some(j)) = tokio::time::timeout_at(close_end.into(), readers.join_next()).await {
        if let Ok(o) = j {
            let _ = hist.add(&o.hist);
            in_window += o.in_window;
        }
    }
    readers.abort_all();
    let window = m1.at - m0.at;
    r.metric(
        "deliveries_per_s",
        in_window as f64 / secs(window),
        "msg/s",
        Better::Higher,
    );
    r.metric("latency_p50_ms", ms(&hist, 0.5), "ms", Better::Lower);
    r.metric("latency_p99_ms", ms(&hist, 0.99), "ms", Better::Lower);
    r.metric("latency_p999_ms", ms(&hist, 0.999), "ms", Better::Lower);
    cpu_metrics(&mut r, m1.since(&m0), window, in_window, "delivery");
    if let Some(s) = m1.server {
        r.metric(
            "server_rss_mib",
            s.rss_kib as f64 / 1024.0,
            "MiB",
            Better::None,
        );
    }
    let sent = k.sent.load(Ordering::Relaxed);
    let received = k.received.load(Ordering::Relaxed);
    let errors = k.msg_errors.load(Ordering::Relaxed);
    r.metric("sent", sent as f64, "", Better::None);
    r.metric("received", received as f64, "", Better::None);
    r.metric("error_replies", errors as f64, "", Better::Lower);
    r.metric(
        "lost",
        (sent * n as u64).saturating_sub(received + errors) as f64,
        "",
        Better::Lower,
    );
    r.errors = k.errors();
    r
}

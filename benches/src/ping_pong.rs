//! `chat --single`: one message in flight per pair, strict ping-pong.
//!
//! The first client of a pair sends message 0 to its partner; whoever receives message
//! `s` sends message `s + 1` back. So a pair never has more than one message on the
//! wire and every message is a separate read, wake-up and write on the server: the
//! traffic of people chatting, as opposed to the batches of `chat -w`.
//!
//! Closed loop: the answer goes out as soon as the message is read. Open loop
//! (`--rate R`): message `s` of a pair is due at `base + s × pairs / R` (`base`: a
//! random phase per pair); it is sent at its due time, or at once when the previous
//! message arrived late, stamped with its due time, so the server is charged for the
//! wait (no coordinated omission) and the pair never has two messages in flight.

use crate::chat::{
    ChatArgs, Window, address_of, body_stamp, chat_metrics, chat_tally, drain, login_pairs,
};
use crate::client::{Conn, Error};
use crate::report::{Better, Report};
use crate::scenarios::{Counters, Env, Phase, latency_histogram, now_ns};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use xmppd_bench::xml::{self, Item};

/// The sequence number of a message: the second number of its body ("STAMP SEQ...").
fn body_seq(el: &[u8]) -> Option<u64> {
    let body = xml::text(xml::child(el, "body")?);
    let rest = &body[body.iter().position(|b| *b == b' ')? + 1..];
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// What one client of a pair does with the turn it holds or receives.
struct Side {
    /// The partner's address (escaped).
    to: String,
    /// Body padding (`--payload`).
    pad: String,
    /// Open loop: time between two messages of the pair (either direction).
    period: Option<Duration>,
    /// Open loop: when message 0 of the pair is due.
    base: Instant,
}

impl Side {
    /// Send message `seq`: at once (closed loop), or at its due time (open loop). `Ok(false)`
    /// when the phase left `Run` while waiting.
    /// `turn_at`: when this side got the turn (the partner's message arrived).
    async fn send(
        &self,
        c: &mut Conn,
        seq: u64,
        turn_at: Instant,
        k: &Counters,
        phase: &mut watch::Receiver<Phase>,
        buf: &mut Vec<u8>,
    ) -> Result<bool, Error> {
        let mut stamp = now_ns();
        if let Some(per) = self.period {
            // tokio's timer ticks in milliseconds: wake up to a tick early and send
            // what is due within the tick, stamped when written (the driver's timer
            // granularity is not charged to the server)
            let tick = Duration::from_millis(1);
            let due = self.base + per.mul_f64(seq as f64);
            let wake = due.checked_sub(tick).unwrap_or(due);
            if Instant::now() < wake {
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    _ = phase.wait_for(|p| *p != Phase::Run) => return Ok(false),
                }
            }
            let now = Instant::now();
            let late = now.saturating_duration_since(due);
            if turn_at > due + tick {
                // the previous message of the pair came after this one's due time
                k.late.fetch_add(1, Ordering::Relaxed);
            }
            stamp = now_ns().saturating_sub(late.as_nanos() as u64);
        }
        buf.clear();
        {
            use std::io::Write;
            let _ = write!(
                buf,
                "<message to='{}' type='chat' id='p{seq}'><body>{stamp} {seq}{}</body></message>",
                self.to, self.pad
            );
        }
        c.send(buf).await?;
        k.sent.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

struct SideOut {
    hist: Histogram<u64>,
    in_window: u64,
}

/// One client of a pair: reads what its partner sends and answers it, until the run
/// is over; then closes its stream and reads until the server closes it.
async fn run_side(
    mut c: Conn,
    side: Side,
    starts: bool,
    k: Arc<Counters>,
    mut phase: watch::Receiver<Phase>,
    win: Arc<Window>,
    hard_end: Instant,
) -> SideOut {
    let mut out = SideOut {
        hist: latency_histogram(),
        in_window: 0,
    };
    let mut buf = Vec::with_capacity(160 + side.pad.len());
    // the sequence number this side must send next, while it holds the turn
    let mut turn: Option<u64> = starts.then_some(0);
    // the first side holds the turn from the start: message 0 is never late
    let mut turn_at = side.base;
    let mut last_sent: u64 = 0;
    let mut closing = false;
    loop {
        let now_phase = *phase.borrow_and_update();
        if now_phase == Phase::Close && !closing {
            closing = true;
            if c.send(b"</stream:stream>").await.is_err() {
                break;
            }
        }
        if now_phase == Phase::Run
            && let Some(seq) = turn.take()
        {
            match side
                .send(&mut c, seq, turn_at, &k, &mut phase, &mut buf)
                .await
            {
                Ok(true) => last_sent = seq,
                Ok(false) => continue,
                Err(e) => {
                    k.error(&e);
                    break;
                }
            }
        }
        // everything complete in the buffer
        loop {
            let item = match c.scan.next_item() {
                Ok(Some(i)) => i,
                Ok(None) => break,
                Err(e) => {
                    k.error(&Error::from(e));
                    return out;
                }
            };
            match item {
                Item::Element(range) => {
                    let el = c.scan.slice(range);
                    if xml::local_name(el) != b"message" {
                        continue;
                    }
                    if xml::attr(el, "type") == Some(b"error") {
                        // our message came back: the turn is ours again
                        k.msg_errors.fetch_add(1, Ordering::Relaxed);
                        turn = Some(last_sent + 1);
                        turn_at = Instant::now();
                        continue;
                    }
                    let (Some(ts), Some(seq)) = (body_stamp(el), body_seq(el)) else {
                        continue;
                    };
                    let now = now_ns();
                    k.received.fetch_add(1, Ordering::Relaxed);
                    if win.contains(now) {
                        out.in_window += 1;
                        let _ = out.hist.record((now.saturating_sub(ts) / 1000).max(1));
                    }
                    turn = Some(seq + 1);
                    turn_at = Instant::now();
                }
                Item::End => return out,
                Item::Header(_) => {}
            }
        }
        if turn.is_some() && *phase.borrow() == Phase::Run {
            continue; // answer before reading again
        }
        let rbuf = c.scan.buffer();
        tokio::select! {
            n = c.io.read_buf(rbuf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
            r = phase.changed(), if !closing => if r.is_err() { break },
            _ = tokio::time::sleep_until(hard_end.into()) => break,
        }
    }
    out
}

/// `chat --single`: every pair keeps exactly one message in flight.
pub async fn chat_single(env: &Env, a: &ChatArgs) -> Report {
    let t = &env.target;
    let tag = if a.rate.is_some() {
        "chat-single-open"
    } else {
        "chat-single"
    };
    let mut r = Report::new(tag, &env.label, &t.addr.to_string());
    r.param("pairs", a.pairs);
    r.param("in_flight_per_pair", 1);
    if let Some(rate) = a.rate {
        r.param("rate_msgs_per_s", rate);
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
    // open loop: each pair carries rate / pairs messages per second
    let period = a
        .rate
        .map(|rate| Duration::from_secs_f64(pairs.len() as f64 / rate.max(1e-6)));
    let pad = "x".repeat(a.payload);
    let mut sides = JoinSet::new();
    env.counters.set_phase("chat warm-up");
    for (x, y) in pairs {
        let base = start
            + period
                .map(|p| p.mul_f64(rand::random::<f64>()))
                .unwrap_or_default();
        let (to_y, to_x) = (address_of(&y, a.to_bare), address_of(&x, a.to_bare));
        for (c, to, starts) in [(x, to_y, true), (y, to_x, false)] {
            let side = Side {
                to,
                pad: pad.clone(),
                period,
                base,
            };
            sides.spawn(run_side(
                c,
                side,
                starts,
                env.counters.clone(),
                prx.clone(),
                win.clone(),
                hard_end,
            ));
        }
    }
    tokio::time::sleep_until((start + a.warmup).into()).await;
    env.counters.set_phase("chat");
    let m0 = crate::procstat::Mark::now(env.server_pid);
    tokio::time::sleep_until((start + a.warmup + a.duration).into()).await;
    let m1 = crate::procstat::Mark::now(env.server_pid);
    let _ = ptx.send(Phase::Stop);
    drain(&env.counters, a.drain).await;
    env.counters.set_phase("chat close");
    let _ = ptx.send(Phase::Close);
    let close_end = Instant::now() + Duration::from_secs(5);
    let mut hist = latency_histogram();
    let mut in_window = 0u64;
    loop {
        match tokio::time::timeout_at(close_end.into(), sides.join_next()).await {
            Ok(Some(Ok(o))) => {
                let _ = hist.add(&o.hist);
                in_window += o.in_window;
            }
            Ok(Some(Err(_))) => {}
            Ok(None) | Err(_) => break,
        }
    }
    sides.abort_all();
    chat_metrics(&mut r, &hist, in_window, &m0, &m1);
    if a.rate.is_some() {
        // not compared between servers: how often a turn comes late depends on the
        // period, which is each server's own half rate
        let sent = env.counters.sent.load(Ordering::Relaxed).max(1);
        r.metric(
            "late_sends_pct",
            env.counters.late.load(Ordering::Relaxed) as f64 * 100.0 / sent as f64,
            "% of sends",
            Better::None,
        );
    }
    chat_tally(&mut r, env);
    r
}

#[cfg(test)]
mod tests {
    use super::body_seq;

    #[test]
    fn body_seq_reads_the_second_number() {
        let el = b"<message from='a@b/c'><body>123456 7xx</body></message>";
        assert_eq!(body_seq(el), Some(7));
        assert_eq!(body_seq(b"<message><body>123</body></message>"), None);
        assert_eq!(body_seq(b"<message/>"), None);
    }
}

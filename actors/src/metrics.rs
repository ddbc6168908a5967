//! Process-wide counters for `/metrics`.
//!
//! Everything here is a plain atomic bumped where the work happens (one `Relaxed`
//! `fetch_add`, no lock, no allocation); the HTTP side reads and encodes them when it
//! is scraped. They are statics: one server per process, and no `Arc` to follow on
//! the hot path. The live connections are in [`crate::monitor`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use xmppd_proto::auth::sasl::Mech;

use crate::signals::Signal;

/// Kinds of actor counted as started and stopped. New actor kinds (outbound queues,
/// rooms, components) add a variant here and hold an [`ActorGuard`] while they live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Connection,
    Session,
    Account,
    IoTask,
    /// A trusted component's connection (XEP-0114).
    Component,
}

impl ActorKind {
    pub const ALL: [ActorKind; 5] = [
        ActorKind::Connection,
        ActorKind::Session,
        ActorKind::Account,
        ActorKind::IoTask,
        ActorKind::Component,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ActorKind::Connection => "connection",
            ActorKind::Session => "session",
            ActorKind::Account => "account",
            ActorKind::IoTask => "io_task",
            ActorKind::Component => "component",
        }
    }
}

const ACTOR_KINDS: usize = ActorKind::ALL.len();

/// The routed signal kinds, in [`Signal`]'s order.
pub const SIGNAL_KINDS: [&str; 4] = ["message", "subscribe", "notify", "info"];

/// What became of a routed signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written to the recipient's stream.
    Delivered,
    /// Kept in the recipient's offline storage.
    StoredOffline,
    /// Returned to its sender as an error.
    Bounced,
    /// Discarded on purpose: from a blocked sender (XEP-0191 §3.3, presence and the
    /// like), or an iq result nobody can take.
    Dropped,
}

/// Each routed signal gets one of them, once. Error stanzas are not counted: a bounce
/// counted its signal as `bounced` when it made the error reply.
pub const OUTCOMES: [&str; 4] = ["delivered", "stored_offline", "bounced", "dropped"];

/// Upper bounds (seconds) of the routing-latency histogram's buckets (+Inf follows).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
];

/// One message in this many on the direct session-to-session path is timed (two clock
/// reads); the others cost one thread-local increment.
pub const ROUTING_SAMPLE: u32 = 64;

thread_local! {
    static ROUTED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// `Some(now)` for one call in [`ROUTING_SAMPLE`] on this thread.
#[inline]
pub fn sample_routing() -> Option<std::time::Instant> {
    ROUTED.with(|n| {
        let v = n.get().wrapping_add(1);
        n.set(v);
        (v % ROUTING_SAMPLE == 0).then(std::time::Instant::now)
    })
}

/// SASL mechanisms (and legacy authentication) counted by result; anything else
/// (an unknown or absent mechanism) is counted as `other`.
pub const AUTH_MECHS: [&str; Mech::ALL.len() + 3] = {
    let mut names = ["other"; Mech::ALL.len() + 3];
    let mut i = 0;
    while i < Mech::ALL.len() {
        names[i] = Mech::ALL[i].name();
        i += 1;
    }
    names[Mech::ALL.len()] = "legacy";
    // an administrator's password on the WebAdmin's login form
    names[Mech::ALL.len() + 1] = "webadmin";
    names
};

/// The process-wide counters (see the module documentation).
pub struct Metrics {
    actors_started: [AtomicU64; ACTOR_KINDS],
    actors_stopped: [AtomicU64; ACTOR_KINDS],
    /// Bumped per delivered stanza by every worker thread: sharded (see [`Sharded`]).
    signals: [Sharded; SIGNAL_KINDS.len() * OUTCOMES.len()],
    /// `[mechanism][0: success, 1: failure]`
    auth: [[AtomicU64; 2]; AUTH_MECHS.len()],
    /// Authentication attempts refused or delayed by the failure throttle.
    pub auth_throttled: AtomicU64,
    /// Stored offline messages written to a session's stream (their signal was counted
    /// once already, as `stored_offline`).
    pub offline_delivered: AtomicU64,
    /// Bytes and stanzas of connections that have closed (the live ones are summed
    /// from the registry when read).
    pub(crate) closed: Totals,
    /// Connections that ever brought TLS up, and all accepted.
    pub tls_established: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// The routing-latency histogram: per bucket (the last is +Inf, not cumulative),
    /// the sum in nanoseconds.
    latency: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64,
}

#[derive(Default)]
pub(crate) struct Totals {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) stanzas_in: AtomicU64,
    pub(crate) stanzas_out: AtomicU64,
}

impl Totals {
    const fn new() -> Totals {
        Totals {
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            stanzas_in: AtomicU64::new(0),
            stanzas_out: AtomicU64::new(0),
        }
    }
}

/// Seconds since the epoch, refreshed by [`tick`] once a second: what the I/O tasks
/// stamp as last activity without reading the clock per read. Read on every read by
/// every worker, written once a second: on a cache line of its own, away from the
/// counters the workers write.
static NOW: Padded = Padded(AtomicU64::new(0));

#[repr(align(128))]
struct Padded(AtomicU64);

pub static METRICS: Metrics = Metrics {
    actors_started: [const { AtomicU64::new(0) }; ACTOR_KINDS],
    actors_stopped: [const { AtomicU64::new(0) }; ACTOR_KINDS],
    signals: [const { Sharded::new() }; SIGNAL_KINDS.len() * OUTCOMES.len()],
    auth: [const { [const { AtomicU64::new(0) }; 2] }; AUTH_MECHS.len()],
    auth_throttled: AtomicU64::new(0),
    offline_delivered: AtomicU64::new(0),
    closed: Totals::new(),
    tls_established: AtomicU64::new(0),
    connections_accepted: AtomicU64::new(0),
    latency: [const { AtomicU64::new(0) }; LATENCY_BUCKETS.len() + 1],
    latency_sum_ns: AtomicU64::new(0),
};

fn kind_index(sig: &Signal) -> usize {
    match sig {
        Signal::Message(_) => 0,
        Signal::Subscribe(_) => 1,
        Signal::Notify(_) => 2,
        Signal::Info(_) => 3,
    }
}

/// Shards of a counter bumped from every worker thread.
const SHARDS: usize = 8;

/// One shard on its own cache line (128 bytes: adjacent-line prefetch pairs them).
#[repr(align(128))]
struct Shard(AtomicU64);

/// A counter split over cache lines: each thread bumps the shard it was given, so
/// workers counting the same thing do not bounce one line between their cores. Reading
/// sums the shards.
pub struct Sharded([Shard; SHARDS]);

static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    static MY_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

impl Sharded {
    pub const fn new() -> Sharded {
        Sharded([const { Shard(AtomicU64::new(0)) }; SHARDS])
    }

    #[inline]
    pub fn add(&self, n: u64) {
        let i = MY_SHARD.with(|i| *i);
        self.0[i].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl Default for Sharded {
    fn default() -> Self {
        Sharded::new()
    }
}

/// Totals of traffic: (bytes in, bytes out, stanzas in, stanzas out).
pub type Traffic = (u64, u64, u64, u64);

impl Metrics {
    /// Count a signal's outcome.
    #[inline]
    pub fn signal(&self, sig: &Signal, outcome: Outcome) {
        self.signal_at(kind_index(sig), outcome);
    }

    /// Count a message's outcome (the direct path carries no [`Signal`]).
    #[inline]
    pub fn message(&self, outcome: Outcome) {
        self.signal_at(0, outcome);
    }

    /// Count the outcome of a stanza an account produced for a session (presence,
    /// roster pushes, offline messages), by what signal kind it is.
    pub fn element(&self, el: &minidom::Element, outcome: Outcome) {
        if el.attr("type") == Some("error") {
            return;
        }
        let kind = match el.name() {
            "message" => 0,
            "presence" => match el.attr("type") {
                Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => 1,
                _ => 2,
            },
            "iq" => 3,
            _ => return,
        };
        self.signal_at(kind, outcome);
    }

    #[inline]
    fn signal_at(&self, kind: usize, outcome: Outcome) {
        self.signals[kind * OUTCOMES.len() + outcome as usize].add(1);
    }

    /// `(kind, outcome, count)` for every pair.
    pub fn signals(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut v = Vec::new();
        for (i, k) in SIGNAL_KINDS.iter().enumerate() {
            for (j, o) in OUTCOMES.iter().enumerate() {
                v.push((*k, *o, self.signals[i * OUTCOMES.len() + j].get()));
            }
        }
        v
    }

    /// Count an authentication by mechanism name (as the client named it).
    pub fn auth(&self, mechanism: &str, ok: bool) {
        let i = AUTH_MECHS
            .iter()
            .position(|m| *m == mechanism)
            .unwrap_or(AUTH_MECHS.len() - 1);
        self.auth[i][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// `(mechanism, result, count)`, result `success` or `failure`.
    pub fn auths(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut v = Vec::new();
        for (m, row) in AUTH_MECHS.iter().zip(&self.auth) {
            v.push((*m, "success", row[0].load(Ordering::Relaxed)));
            v.push((*m, "failure", row[1].load(Ordering::Relaxed)));
        }
        v
    }

    /// Actors of `kind` running now.
    pub fn live(&self, kind: ActorKind) -> u64 {
        let i = kind as usize;
        self.actors_started[i]
            .load(Ordering::Relaxed)
            .saturating_sub(self.actors_stopped[i].load(Ordering::Relaxed))
    }

    /// `(kind, started, stopped)` for every actor kind.
    pub fn actors(&self) -> Vec<(&'static str, u64, u64)> {
        ActorKind::ALL
            .iter()
            .map(|k| {
                let i = *k as usize;
                (
                    k.name(),
                    self.actors_started[i].load(Ordering::Relaxed),
                    self.actors_stopped[i].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Traffic of every connection since the start, closed and live (never decreasing:
    /// see [`crate::monitor::summary`]).
    pub fn traffic(&self) -> Traffic {
        crate::monitor::summary().traffic
    }

    /// A sampled message went from the sender's session to the recipient's stream in `d`.
    pub fn observe_routing(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The histogram as prometheus-client takes it: (sum in seconds, count, per-bucket
    /// `(upper bound, count)` ending with +Inf; the encoder makes them cumulative).
    pub fn routing_latency(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut acc = 0;
        let mut buckets = Vec::with_capacity(self.latency.len());
        for (i, n) in self.latency.iter().enumerate() {
            let n = n.load(Ordering::Relaxed);
            acc += n;
            buckets.push((LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), n));
        }
        let sum = self.latency_sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, acc, buckets)
    }

    /// Seconds since the epoch, as of the last [`tick`].
    #[inline]
    pub fn now(&self) -> u64 {
        NOW.0.load(Ordering::Relaxed)
    }
}

/// Refresh the coarse clock ([`Metrics::now`]); the server calls it once a second.
pub fn tick() {
    NOW.0.store(unix_now(), Ordering::Relaxed);
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Counts an actor as started now and as stopped when dropped.
pub struct ActorGuard(ActorKind);

impl ActorGuard {
    pub fn new(kind: ActorKind) -> ActorGuard {
        METRICS.actors_started[kind as usize].fetch_add(1, Ordering::Relaxed);
        ActorGuard(kind)
    }
}

impl Drop for ActorGuard {
    fn drop(&mut self) {
        METRICS.actors_stopped[self.0 as usize].fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sharded_counter_sums_what_every_thread_added() {
        static C: Sharded = Sharded::new();
        let threads: Vec<_> = (0..12)
            .map(|_| std::thread::spawn(|| (0..1000).for_each(|_| C.add(1))))
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(C.get(), 12_000);
    }

    #[test]
    fn routing_latency_is_cumulative_and_sampled() {
        let (_, before, _) = METRICS.routing_latency();
        METRICS.observe_routing(std::time::Duration::from_micros(30));
        METRICS.observe_routing(std::time::Duration::from_secs(5));
        let (sum, count, buckets) = METRICS.routing_latency();
        assert!(count >= before + 2 && sum >= 5.0);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), count);
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(buckets.last().is_some_and(|b| b.0.is_infinite() && b.1 > 0));
        let sampled = (0..ROUTING_SAMPLE * 4)
            .filter(|_| sample_routing().is_some())
            .count();
        assert_eq!(sampled, 4);
    }

    #[test]
    fn every_mechanism_the_server_offers_has_its_own_row() {
        for m in Mech::ALL {
            assert!(AUTH_MECHS.contains(&m.name()), "{}", m.name());
        }
        assert_eq!(
            &AUTH_MECHS[Mech::ALL.len()..],
            &["legacy", "webadmin", "other"]
        );
    }

    #[test]
    fn auth_counts_by_mechanism_and_unknown_as_other() {
        let find = |m: &str, r: &str| {
            METRICS
                .auths()
                .into_iter()
                .find(|(a, b, _)| *a == m && *b == r)
                .map(|x| x.2)
                .expect("row")
        };
        let (p, o) = (find("SCRAM-SHA-1", "failure"), find("other", "success"));
        METRICS.auth("SCRAM-SHA-1", false);
        METRICS.auth("X-NOPE", true);
        assert!(find("SCRAM-SHA-1", "failure") > p);
        assert!(find("other", "success") > o);
    }
}

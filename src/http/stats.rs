//! `GET /stats`: the live counters as JSON (connections, connection and session actors,
//! I/O tasks, stanzas, the throttle's and storage's state). Tests and the soak run
//! read it; `/metrics` is the same and more for Prometheus.

use std::sync::atomic::Ordering;
use xmppd_actors::context::Ctx;

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
pub fn rss_bytes() -> u64 {
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

//! `GET /metrics`: the Prometheus exposition (OpenMetrics text), encoded by
//! `prometheus-client` from the engine's atomics at scrape time
//! ([`xmppd_actors::metrics`], the [`Stats`](xmppd_actors::context::Stats) gauges) and
//! from `/proc/self`. Nothing here runs on the hot path.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::Ordering;
use xmppd_actors::context::Ctx;
use xmppd_actors::metrics::METRICS;
use xmppd_actors::monitor::{ConnKind, summary};

/// Reads everything when scraped.
struct Engine(Ctx);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// One metric family: its samples, each with its labels.
fn family<M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: Vec<(Labels<'_>, M)>,
) -> Result<(), std::fmt::Error> {
    let Some(ty) = samples.first().map(|(_, m)| m.metric_type()) else {
        return Ok(());
    };
    let mut d = enc.encode_descriptor(name, help, unit, ty)?;
    for (labels, m) in samples {
        if labels.is_empty() {
            m.encode(d.encode_family(&Vec::<(&str, &str)>::new())?)?;
        } else {
            m.encode(d.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

fn gauge(v: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

fn counter(v: u64) -> ConstCounter<u64> {
    ConstCounter::new(v)
}

impl Collector for Engine {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0.stats;
        // live connections by stream kind and by security, and the traffic: one pass
        let reg = summary();
        let (by_kind, tls) = (reg.by_kind, reg.tls);
        family(
            &mut enc,
            "connections",
            "Open connections by stream kind (negotiating: no stream header yet)",
            None,
            ConnKind::ALL
                .iter()
                .map(|k| (vec![("kind", k.name())], gauge(by_kind[*k as usize])))
                .collect(),
        )?;
        family(
            &mut enc,
            "connections_secure",
            "Open connections with and without TLS",
            None,
            vec![
                (vec![("tls", "true")], gauge(tls)),
                (vec![("tls", "false")], gauge(reg.live - tls)),
            ],
        )?;
        family(
            &mut enc,
            "connections_accepted",
            "Connections accepted",
            None,
            vec![(
                vec![],
                counter(METRICS.connections_accepted.load(Ordering::Relaxed)),
            )],
        )?;
        family(
            &mut enc,
            "connections_tls",
            "Connections that brought TLS up (STARTTLS or direct TLS)",
            None,
            vec![(
                vec![],
                counter(METRICS.tls_established.load(Ordering::Relaxed)),
            )],
        )?;
        family(
            &mut enc,
            "offline_delivered",
            "Stored offline messages written to a session when it came online (counted as stored_offline when they were routed)",
            None,
            vec![(
                vec![],
                counter(METRICS.offline_delivered.load(Ordering::Relaxed)),
            )],
        )?;
        family(
            &mut enc,
            "connections_refused",
            "Connections refused at the channels limit",
            None,
            vec![(
                vec![],
                counter(stats.refused_connections.load(Ordering::Relaxed)),
            )],
        )?;
        // actors
        let actors = METRICS.actors();
        family(
            &mut enc,
            "actors",
            "Live actors by kind",
            None,
            actors
                .iter()
                .map(|(k, started, stopped)| {
                    (vec![("kind", *k)], gauge(started.saturating_sub(*stopped)))
                })
                .collect(),
        )?;
        family(
            &mut enc,
            "actors_started",
            "Actors started by kind",
            None,
            actors
                .iter()
                .map(|(k, started, _)| (vec![("kind", *k)], counter(*started)))
                .collect(),
        )?;
        family(
            &mut enc,
            "actors_stopped",
            "Actors stopped by kind",
            None,
            actors
                .iter()
                .map(|(k, _, stopped)| (vec![("kind", *k)], counter(*stopped)))
                .collect(),
        )?;
        // routing
        family(
            &mut enc,
            "signals",
            "Signals routed by kind (message, subscribe, notify, info) and outcome",
            None,
            METRICS
                .signals()
                .into_iter()
                .map(|(k, o, n)| (vec![("kind", k), ("outcome", o)], counter(n)))
                .collect(),
        )?;
        let (sum, count, buckets) = METRICS.routing_latency();
        enc.encode_descriptor(
            "routing_latency",
            "Time from the sender's session to the recipient's stream, messages on the direct path, one in 64 sampled",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?
        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        // traffic
        let (bytes_in, bytes_out, stanzas_in, stanzas_out) = reg.traffic;
        family(
            &mut enc,
            "traffic",
            "XML bytes read from peers (in, after TLS) and written to peers (out, before TLS)",
            Some(&Unit::Bytes),
            vec![
                (vec![("direction", "in")], counter(bytes_in)),
                (vec![("direction", "out")], counter(bytes_out)),
            ],
        )?;
        family(
            &mut enc,
            "stanzas",
            "Top-level elements read from peers (in) and stanzas written to clients (out)",
            None,
            vec![
                (vec![("direction", "in")], counter(stanzas_in)),
                (vec![("direction", "out")], counter(stanzas_out)),
            ],
        )?;
        // authentication
        family(
            &mut enc,
            "authentications",
            "Authentication attempts by mechanism and result",
            None,
            METRICS
                .auths()
                .into_iter()
                .map(|(m, r, n)| (vec![("mechanism", m), ("result", r)], counter(n)))
                .collect(),
        )?;
        family(
            &mut enc,
            "authentications_throttled",
            "Authentication attempts refused by the failure throttle",
            None,
            vec![(
                vec![],
                counter(METRICS.auth_throttled.load(Ordering::Relaxed)),
            )],
        )?;
        family(
            &mut enc,
            "uptime",
            "Time since the server started",
            Some(&Unit::Seconds),
            vec![(vec![], gauge(self.0.started.elapsed().as_secs()))],
        )?;
        Ok(())
    }
}

/// The process, under the names Prometheus' client libraries use (no `xmppd_` prefix:
/// dashboards for any process work unchanged).
#[derive(Debug)]
struct Process(std::time::Instant);

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        family(
            &mut enc,
            "process_resident_memory",
            "Resident memory size in bytes",
            Some(&Unit::Bytes),
            vec![(vec![], gauge(super::stats::rss_bytes()))],
        )?;
        family(
            &mut enc,
            "process_open_fds",
            "Number of open file descriptors",
            None,
            vec![(vec![], gauge(open_fds()))],
        )?;
        if let Some(max) = max_fds() {
            family(
                &mut enc,
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                vec![(vec![], gauge(max))],
            )?;
        }
        if let Some(cpu) = cpu_seconds() {
            family(
                &mut enc,
                "process_cpu",
                "Total user and system CPU time spent in seconds",
                Some(&Unit::Seconds),
                vec![(vec![], ConstCounter::new(cpu))],
            )?;
        }
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(self.0.elapsed());
        family(
            &mut enc,
            "process_start_time",
            "Start time of the process since unix epoch in seconds",
            Some(&Unit::Seconds),
            vec![(vec![], ConstGauge::new(start.as_secs_f64()))],
        )?;
        Ok(())
    }
}

/// Open file descriptors (0 where /proc is not there).
fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0)
}

/// The soft limit on open files (`Max open files` in /proc/self/limits).
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// User and system CPU time (fields 14 and 15 of /proc/self/stat, in clock ticks).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // the command name (field 2) may hold spaces: count from after its ')'
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    let hz = rustix::param::clock_ticks_per_second();
    (hz > 0).then(|| (utime + stime) as f64 / hz as f64)
}

/// The registry `/metrics` encodes: the engine's `xmppd_` names and the standard
/// `process_` ones.
pub fn registry(ctx: &Ctx) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(Process(ctx.started)));
    r.sub_registry_with_prefix("xmppd")
        .register_collector(Box::new(Engine(ctx.clone())));
    r
}

/// The exposition text; an encoding error (a collector failed) is the caller's 500.
pub fn render(r: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut out, r)?;
    Ok(out)
}

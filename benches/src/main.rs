//! xmppd-load: an XMPP load driver.
//!
//! It speaks real XMPP over TCP (STARTTLS, SASL SCRAM-SHA-256 / SCRAM-SHA-1 / PLAIN,
//! resource binding, presence) to any server on this machine and measures logins,
//! one-to-one chat throughput and latency, and the cost of idle sessions, together
//! with the server's CPU and memory (from /proc, given its pid) and its own CPU.

mod chat;
mod client;
mod federated;
mod offline;
mod ping_pong;
mod procstat;
mod report;
mod room;
mod scenarios;

use xmppd_bench::scram;

use clap::{Args, Parser, Subcommand};
use client::Target;
use scenarios::{Counters, Env};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "xmppd-load",
    version,
    about = "XMPP load driver (loopback benchmarks)"
)]
struct Cli {
    #[command(flatten)]
    g: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args)]
struct Global {
    /// Server address: an IP address (no DNS lookups), or `localhost`.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, global = true, default_value_t = 5222)]
    port: u16,
    /// The XMPP domain (stream `to`, account domain, TLS server name).
    #[arg(long, global = true, default_value = "localhost")]
    domain: String,
    /// Account name pattern; `{n}` is replaced by the account number.
    #[arg(long, global = true, default_value = "user{n}")]
    user: String,
    #[arg(long, global = true, default_value = "pw")]
    password: String,
    #[arg(long, global = true, value_enum, default_value = "SCRAM-SHA-256")]
    mech: scram::Mechanism,
    /// Do not negotiate STARTTLS (only for servers that allow it).
    #[arg(long, global = true)]
    no_tls: bool,
    /// Let the TLS client resume sessions (default: a full handshake per connection).
    #[arg(long, global = true)]
    tls_resume: bool,
    /// Source addresses to spread connections over: `127.0.0.2-127.0.0.7`,
    /// `127.0.0.2,127.0.0.3`, or `none` (kernel's choice).
    #[arg(long, global = true, default_value = "127.0.0.2-127.0.0.7")]
    sources: String,
    /// Driver worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[arg(long, global = true, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Seconds one login (connect to bind, presence, ping) may take.
    #[arg(long, global = true, default_value_t = 30.0)]
    login_timeout: f64,
    /// Pid of the server process: its CPU time and RSS are measured.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Name of the server in reports.
    #[arg(long, global = true, default_value = "server")]
    label: String,
    /// Scenario name in the report (default: the subcommand's).
    #[arg(long, global = true)]
    tag: Option<String>,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Hard bound on the whole run, seconds: the driver exits (status 3) when it passes.
    #[arg(long, global = true, default_value_t = 900.0)]
    max_time: f64,
    /// No progress line on stderr.
    #[arg(long, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// C concurrent clients log in (STARTTLS, SASL, bind, presence) over and over.
    Login {
        #[arg(long, short = 'c', default_value_t = 50)]
        concurrency: usize,
        /// Accounts cycled through (first..first+accounts).
        #[arg(long, default_value_t = 1000)]
        accounts: u64,
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Measured seconds.
        #[arg(long, short = 'd', default_value_t = 20.0)]
        duration: f64,
        /// Skip the first pass over every account (which fills the driver's SCRAM cache).
        #[arg(long)]
        no_prime: bool,
        /// Count a login done at bind + presence, without waiting for a ping answer.
        #[arg(long)]
        no_ping: bool,
        /// Bound on the priming pass, seconds.
        #[arg(long, default_value_t = 300.0)]
        ramp_timeout: f64,
    },
    /// P pairs of clients exchange messages (closed loop, or open loop with --rate).
    Chat {
        #[arg(long, short = 'p', default_value_t = 50)]
        pairs: usize,
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Closed loop: messages in flight per direction of a pair.
        #[arg(long, short = 'w', default_value_t = 8)]
        window: usize,
        /// One message in flight per pair (strict ping-pong: the partner answers each
        /// message on receipt, or at its due time with --rate); -w and --batch do not apply.
        #[arg(long)]
        single: bool,
        /// Open loop at this total rate (messages/s over all pairs and directions).
        #[arg(long)]
        rate: Option<f64>,
        /// Measured seconds.
        #[arg(long, short = 'd', default_value_t = 20.0)]
        duration: f64,
        /// Seconds of traffic before the measurement starts.
        #[arg(long, default_value_t = 3.0)]
        warmup: f64,
        /// Seconds to wait for messages still in flight at the end.
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        /// Extra body bytes per message.
        #[arg(long, default_value_t = 0)]
        payload: usize,
        /// Most messages written in one go by a sender.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Address messages to the partner's bare JID (default: full JID).
        #[arg(long)]
        to_bare: bool,
        /// Which sessions (numbered in login order) form a pair.
        #[arg(long, value_enum, default_value = "adjacent")]
        pairing: chat::Pairing,
        #[arg(long, default_value_t = 50)]
        login_concurrency: usize,
        #[arg(long, default_value_t = 300.0)]
        ramp_timeout: f64,
    },
    /// N authenticated sessions held open: server memory per session, idle CPU.
    Idle {
        #[arg(long, short = 'n', default_value_t = 1000)]
        sessions: usize,
        #[arg(long, default_value_t = 0)]
        first: u64,
        #[arg(long, short = 'c', default_value_t = 50)]
        concurrency: usize,
        /// Seconds after the last login before memory is read.
        #[arg(long, default_value_t = 5.0)]
        settle: f64,
        /// Seconds the sessions are held idle (CPU measured).
        #[arg(long, short = 'd', default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 300.0)]
        ramp_timeout: f64,
    },
    /// Senders write to recipients who are not logged in, at rising rates; the
    /// recipients then collect what was stored (offline storage throughput).
    Offline {
        #[arg(long, default_value_t = 10)]
        senders: usize,
        #[arg(long, default_value_t = 100)]
        recipients: usize,
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Offered rates (messages/s over all senders), one step each.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "500,1000,2000,5000,10000,20000,40000"
        )]
        rates: Vec<f64>,
        /// Seconds per step.
        #[arg(long, default_value_t = 5.0)]
        step: f64,
        /// Longest wait for the server to finish storing after a step, seconds.
        #[arg(long, default_value_t = 120.0)]
        settle_timeout: f64,
        /// Another process (with its children) that must be quiet too before a step is
        /// collected: the database server of a server that stores elsewhere.
        #[arg(long)]
        quiet_pid: Option<u32>,
        #[arg(long, default_value_t = 20)]
        login_concurrency: usize,
        #[arg(long, default_value_t = 300.0)]
        ramp_timeout: f64,
    },
    /// N occupants of one chat room (XEP-0045) send groupchat messages open loop:
    /// deliveries per second, delivery latency, server CPU per delivery.
    Room {
        #[arg(long, short = 'n', default_value_t = 100)]
        occupants: usize,
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Messages per second into the room (all senders together); each is
        /// delivered to every occupant.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        /// The room's JID (default: bench@conference.DOMAIN).
        #[arg(long, default_value = "")]
        room: String,
        #[arg(long, short = 'd', default_value_t = 20.0)]
        duration: f64,
        #[arg(long, default_value_t = 3.0)]
        warmup: f64,
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        #[arg(long, default_value_t = 0)]
        payload: usize,
        #[arg(long, default_value_t = 50)]
        login_concurrency: usize,
        #[arg(long, default_value_t = 300.0)]
        ramp_timeout: f64,
    },
    /// Federated chat: P senders on this server (`--host`, `--domain`) write to P
    /// receivers on another (`--peer-host`, `--peer-domain`), open loop at `--rate`;
    /// every message crosses the server-to-server link. Reports deliveries/s, latency
    /// and the CPU of both servers per delivered message.
    Federated {
        /// The receivers' server: an IP address.
        #[arg(long)]
        peer_host: String,
        #[arg(long, default_value_t = 5222)]
        peer_port: u16,
        /// The receivers' domain.
        #[arg(long)]
        peer_domain: String,
        /// Pid of the receivers' server (CPU measured).
        #[arg(long)]
        peer_pid: Option<u32>,
        #[arg(long, short = 'p', default_value_t = 50)]
        pairs: usize,
        #[arg(long, default_value_t = 0)]
        first: u64,
        /// Messages per second over all senders.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, short = 'd', default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 5.0)]
        drain: f64,
        #[arg(long, default_value_t = 0)]
        payload: usize,
        #[arg(long, default_value_t = 50)]
        login_concurrency: usize,
        #[arg(long, default_value_t = 300.0)]
        ramp_timeout: f64,
        /// Seconds the first message of each pair may take (link set-up).
        #[arg(long, default_value_t = 60.0)]
        link_timeout: f64,
    },
    /// Create accounts first..first+accounts by in-band registration (XEP-0077).
    Register {
        #[arg(long, default_value_t = 1000)]
        accounts: u64,
        #[arg(long, default_value_t = 0)]
        first: u64,
        #[arg(long, short = 'c', default_value_t = 20)]
        concurrency: usize,
    },
    /// Print one metric's value from a JSON report (for scripts).
    Value { file: PathBuf, key: String },
    /// Print the markdown comparison of JSON reports (one column per label).
    Compare {
        /// The server the ratios are computed for.
        #[arg(long, default_value = "xmppd")]
        baseline: String,
        /// Only these metrics (comma-separated); default all.
        #[arg(long)]
        metrics: Option<String>,
        files: Vec<PathBuf>,
    },
}

fn parse_sources(s: &str) -> Result<Vec<IpAddr>, String> {
    if s == "none" || s.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.parse().map_err(|_| format!("bad address {a}"))?;
            let b: Ipv4Addr = b.parse().map_err(|_| format!("bad address {b}"))?;
            let (x, y) = (u32::from(a), u32::from(b));
            if y < x || y - x > 1024 {
                return Err(format!("bad range {part}"));
            }
            out.extend((x..=y).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(part.parse().map_err(|_| format!("bad address {part}"))?);
        }
    }
    Ok(out)
}

fn parse_host(h: &str) -> Result<IpAddr, String> {
    if h == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    h.parse()
        .map_err(|_| format!("--host must be an IP address (no DNS lookups): {h}"))
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

/// Prints the live counters once a second on stderr.
async fn progress(k: Arc<Counters>, pid: Option<u32>) {
    let start = Instant::now();
    let mut last = procstat::Mark::now(pid);
    let (mut ls, mut lr, mut ll) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = procstat::Mark::now(pid);
        let d = now.since(&last);
        let dt = (now.at - last.at).as_secs_f64().max(1e-9);
        let (s, r, l) = (
            k.sent.load(Ordering::Relaxed),
            k.received.load(Ordering::Relaxed),
            k.logins.load(Ordering::Relaxed),
        );
        let server = match (d.server_cpu, now.server) {
            (Some(c), Some(m)) => format!(
                " server cpu {:>3.0}% rss {:.0} MiB",
                c.as_secs_f64() * 100.0 / dt,
                m.rss_kib as f64 / 1024.0
            ),
            _ => String::new(),
        };
        let phase = k.phase.lock().map(|p| p.clone()).unwrap_or_default();
        eprintln!(
            "[{:>4}s] {phase:<13} online {:>6}  logins {:>7} ({:>5.0}/s) fail {:>4}  sent {:>9} ({:>6.0}/s)  recv {:>9} ({:>6.0}/s)  err {:>4}{server}  driver cpu {:>3.0}%",
            start.elapsed().as_secs(),
            k.online.load(Ordering::Relaxed),
            l,
            (l - ll) as f64 / dt,
            k.login_failures.load(Ordering::Relaxed),
            s,
            (s - ls) as f64 / dt,
            r,
            (r - lr) as f64 / dt,
            k.msg_errors.load(Ordering::Relaxed),
            d.driver_cpu.as_secs_f64() * 100.0 / dt,
        );
        (ls, lr, ll) = (s, r, l);
        last = now;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = &cli.g;
    match &cli.cmd {
        Cmd::Compare {
            baseline,
            metrics,
            files,
        } => {
            let mut reports = Vec::new();
            for f in files {
                let parsed = std::fs::read_to_string(f)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        serde_json::from_str::<report::Report>(&t).map_err(|e| e.to_string())
                    });
                match parsed {
                    Ok(r) => reports.push(r),
                    Err(e) => eprintln!("xmppd-load: {}: {e} (skipped)", f.display()),
                }
            }
            let keys: Option<Vec<String>> = metrics
                .as_ref()
                .map(|m| m.split(',').map(|s| s.trim().to_string()).collect());
            print!("{}", report::compare(&reports, baseline, keys.as_deref()));
            return ExitCode::SUCCESS;
        }
        Cmd::Value { file, key } => {
            let v = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| serde_json::from_str::<report::Report>(&t).ok())
                .and_then(|r| r.get(key));
            return match v {
                Some(v) => {
                    println!("{v}");
                    ExitCode::SUCCESS
                }
                None => ExitCode::FAILURE,
            };
        }
        _ => {}
    }
    let ip = match parse_host(&g.host) {
        Ok(ip) => ip,
        Err(e) => {
            eprintln!("xmppd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let sources = match parse_sources(&g.sources) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xmppd-load: --sources: {e}");
            return ExitCode::from(2);
        }
    };
    if ip.is_loopback() && sources.iter().any(|s| !s.is_loopback()) {
        eprintln!("xmppd-load: source addresses must be loopback when the server is");
        return ExitCode::from(2);
    }
    let tls = match client::tls_config(g.tls_resume) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("xmppd-load: TLS setup: {e}");
            return ExitCode::from(2);
        }
    };
    let nofile = procstat::raise_nofile();
    // The hard bound: whatever happens, the process ends.
    let max_time = secs(g.max_time);
    std::thread::spawn(move || {
        std::thread::sleep(max_time);
        eprintln!(
            "xmppd-load: hard time bound of {:.0}s reached, exiting",
            max_time.as_secs_f64()
        );
        std::process::exit(3);
    });
    let threads = g.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xmppd-load: runtime: {e}");
            return ExitCode::from(2);
        }
    };
    scenarios::now_ns();
    let target = Arc::new(Target {
        addr: SocketAddr::new(ip, g.port),
        domain: g.domain.clone(),
        user_pattern: g.user.clone(),
        password: g.password.clone(),
        mech: g.mech,
        starttls: !g.no_tls,
        tls,
        sources,
        connect_timeout: secs(g.connect_timeout),
        next_source: AtomicUsize::new(0),
    });
    let counters = Arc::new(Counters::default());
    let env = Env {
        target,
        counters: counters.clone(),
        server_pid: g.server_pid,
        login_timeout: secs(g.login_timeout),
        label: g.label.clone(),
    };
    if !g.quiet {
        eprintln!(
            "xmppd-load: {} threads, RLIMIT_NOFILE {nofile}, {} source addresses",
            threads,
            env.target.sources.len()
        );
    }
    let mut report = rt.block_on(async {
        if !g.quiet {
            tokio::spawn(progress(counters.clone(), g.server_pid));
        }
        match &cli.cmd {
            Cmd::Login {
                concurrency,
                accounts,
                first,
                duration,
                no_prime,
                no_ping,
                ramp_timeout,
            } => {
                scenarios::login(
                    &env,
                    &scenarios::LoginArgs {
                        concurrency: *concurrency,
                        accounts: *accounts,
                        first: *first,
                        duration: secs(*duration),
                        prime: !no_prime,
                        ping: !no_ping,
                        ramp_timeout: secs(*ramp_timeout),
                    },
                )
                .await
            }
            Cmd::Chat {
                pairs,
                first,
                window,
                single,
                rate,
                duration,
                warmup,
                drain,
                payload,
                batch,
                to_bare,
                pairing,
                login_concurrency,
                ramp_timeout,
            } => {
                let args = chat::ChatArgs {
                    pairs: *pairs,
                    first: *first,
                    window: *window,
                    rate: *rate,
                    duration: secs(*duration),
                    warmup: secs(*warmup),
                    drain: secs(*drain),
                    payload: *payload,
                    batch: *batch,
                    to_bare: *to_bare,
                    pairing: *pairing,
                    login_concurrency: *login_concurrency,
                    ramp_timeout: secs(*ramp_timeout),
                };
                if *single {
                    ping_pong::chat_single(&env, &args).await
                } else {
                    chat::chat(&env, &args).await
                }
            }
            Cmd::Idle {
                sessions,
                first,
                concurrency,
                settle,
                duration,
                ramp_timeout,
            } => {
                scenarios::idle(
                    &env,
                    &scenarios::IdleArgs {
                        sessions: *sessions,
                        first: *first,
                        concurrency: *concurrency,
                        settle: secs(*settle),
                        duration: secs(*duration),
                        ramp_timeout: secs(*ramp_timeout),
                    },
                )
                .await
            }
            Cmd::Offline {
                senders,
                recipients,
                first,
                rates,
                step,
                settle_timeout,
                quiet_pid,
                login_concurrency,
                ramp_timeout,
            } => {
                offline::offline(
                    &env,
                    &offline::OfflineArgs {
                        senders: (*senders).max(1),
                        recipients: (*recipients).max(1),
                        first: *first,
                        rates: rates.clone(),
                        step: secs(*step),
                        settle_timeout: secs(*settle_timeout),
                        quiet_pid: *quiet_pid,
                        login_concurrency: *login_concurrency,
                        ramp_timeout: secs(*ramp_timeout),
                    },
                )
                .await
            }
            Cmd::Register {
                accounts,
                first,
                concurrency,
            } => scenarios::register(&env, *first, *accounts, *concurrency).await,
            Cmd::Room {
                occupants,
                first,
                rate,
                room,
                duration,
                warmup,
                drain,
                payload,
                login_concurrency,
                ramp_timeout,
            } => {
                room::room(
                    &env,
                    &room::RoomArgs {
                        occupants: *occupants,
                        first: *first,
                        rate: *rate,
                        room: room.clone(),
                        duration: secs(*duration),
                        warmup: secs(*warmup),
                        drain: secs(*drain),
                        payload: *payload,
                        login_concurrency: *login_concurrency,
                        ramp_timeout: secs(*ramp_timeout),
                    },
                )
                .await
            }
            Cmd::Federated {
                peer_host,
                peer_port,
                peer_domain,
                peer_pid,
                pairs,
                first,
                rate,
                duration,
                warmup,
                drain,
                payload,
                login_concurrency,
                ramp_timeout,
                link_timeout,
            } => {
                let peer_ip = match parse_host(peer_host) {
                    Ok(ip) if ip.is_loopback() || !env.target.addr.ip().is_loopback() => ip,
                    Ok(_) | Err(_) => {
                        eprintln!("xmppd-load: --peer-host must be an IP address (loopback with a loopback --host)");
                        std::process::exit(2);
                    }
                };
                let peer = Env {
                    target: Arc::new(Target {
                        addr: SocketAddr::new(peer_ip, *peer_port),
                        domain: peer_domain.clone(),
                        user_pattern: env.target.user_pattern.clone(),
                        password: env.target.password.clone(),
                        mech: env.target.mech,
                        starttls: env.target.starttls,
                        tls: env.target.tls.clone(),
                        sources: env.target.sources.clone(),
                        connect_timeout: env.target.connect_timeout,
                        next_source: AtomicUsize::new(0),
                    }),
                    counters: env.counters.clone(),
                    server_pid: *peer_pid,
                    login_timeout: env.login_timeout,
                    label: env.label.clone(),
                };
                federated::federated(
                    &env,
                    &peer,
                    &federated::FederatedArgs {
                        pairs: (*pairs).max(1),
                        first: *first,
                        rate: *rate,
                        duration: secs(*duration),
                        warmup: secs(*warmup),
                        drain: secs(*drain),
                        payload: *payload,
                        login_concurrency: *login_concurrency,
                        ramp_timeout: secs(*ramp_timeout),
                        link_timeout: secs(*link_timeout),
                    },
                )
                .await
            }
            Cmd::Compare { .. } | Cmd::Value { .. } => {
                unreachable!("handled above")
            }
        }
    });
    // Do not wait for stray tasks (background closes) beyond a short grace.
    rt.shutdown_timeout(Duration::from_secs(1));
    if let Some(tag) = &g.tag {
        report.scenario = tag.clone();
    }
    report.param("driver_threads", threads);
    print!("{}", report.table());
    if let Some(path) = &g.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => {
                if let Err(e) = std::fs::write(path, s + "\n") {
                    eprintln!("xmppd-load: {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("xmppd-load: json: {e}"),
        }
    }
    let failed = match &cli.cmd {
        Cmd::Register { .. } => report.get("failed").unwrap_or(0.0) > 0.0,
        Cmd::Login { .. } => report.get("logins").unwrap_or(0.0) == 0.0,
        Cmd::Chat { .. } | Cmd::Federated { .. } => report.get("received").unwrap_or(0.0) == 0.0,
        Cmd::Idle { .. } => report.get("sessions_up").unwrap_or(0.0) == 0.0,
        Cmd::Offline { .. } => report.get("stored_per_s_max").unwrap_or(0.0) == 0.0,
        _ => false,
    };
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

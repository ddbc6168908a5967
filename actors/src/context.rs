//! What every actor shares: live settings, storage, TLS, the registry, counters.

use crate::metrics::{ActorKind, METRICS};
use crate::signals::RegistryRef;
use crate::storage::Storage;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use xmppd_proto::auth::sasl::DecoyKey;
use xmppd_proto::config::Settings;
use xmppd_proto::net::tls::TlsContext;
use xmppd_proto::xep::register_limit::{PasswordLimit, RecentRemovals, RegistrationLimit};

/// A value an administrator can replace while the server runs. Readers take a cheap
/// snapshot (`Arc`) and keep it for the work at hand.
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(v: T) -> Self {
        Live(RwLock::new(Arc::new(v)))
    }

    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set(&self, v: T) {
        match self.0.write() {
            Ok(mut g) => *g = Arc::new(v),
            Err(p) => *p.into_inner() = Arc::new(v),
        }
    }
}

/// Counters the monitoring page and the tests read.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections: AtomicUsize,
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    pub auth_failures: AtomicU64,
    pub refused_connections: AtomicU64,
}

/// Increments one of the [`Stats`] gauges for as long as it lives.
pub struct Gauge(fn(&Stats) -> &AtomicUsize, Arc<Stats>);

impl Gauge {
    pub fn new(stats: &Arc<Stats>, which: fn(&Stats) -> &AtomicUsize) -> Self {
        which(stats).fetch_add(1, Ordering::Relaxed);
        Gauge(which, stats.clone())
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.0)(&self.1).fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    pub fn snapshot(&self) -> serde_json::Value {
        let l = |a: &AtomicUsize| a.load(Ordering::Relaxed);
        let l64 = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "connections": l(&self.connections),
            // the live actors, as the metrics count them (started − stopped)
            "connection_actors": METRICS.live(ActorKind::Connection),
            "session_actors": METRICS.live(ActorKind::Session),
            "io_tasks": METRICS.live(ActorKind::IoTask),
            "stanzas_in": l64(&self.stanzas_in),
            "stanzas_out": l64(&self.stanzas_out),
            "auth_failures": l64(&self.auth_failures),
            "refused_connections": l64(&self.refused_connections),
        })
    }
}

/// Shared by every connection and session.
pub struct ServerContext {
    pub settings: Live<Settings>,
    pub storage: Storage,
    pub tls: TlsContext,
    pub registry: RegistryRef,
    pub log: slog::Logger,
    pub decoy: DecoyKey,
    pub stats: Arc<Stats>,
    pub started: Instant,
    /// Flips to true when the server shuts down; every connection watches it.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// The iteration count of an unknown user's decoy credentials: what most stored
    /// accounts have (read at start), else the configured one.
    pub decoy_iterations: std::sync::atomic::AtomicU32,
    /// The domains of the trusted components attached now (disco#items lists them),
    /// kept by the registry.
    pub components: Live<Vec<String>>,
    /// In-band registrations counted per address, /48 and server (XEP-0077).
    pub registrations: RegistrationLimit,
    /// In-band password changes counted per account.
    pub password_changes: PasswordLimit,
    /// Accounts removed in-band lately: a stream authenticated before a removal must
    /// not bind after it.
    pub removals: RecentRemovals,
}

pub type Ctx = Arc<ServerContext>;

impl ServerContext {
    /// Run `then` on the actor when the server starts shutting down.
    pub fn on_shutdown<A>(&self, ctx: &mut actix::Context<A>, then: fn(&mut A))
    where
        A: actix::Actor<Context = actix::Context<A>>,
    {
        use actix::{ActorFutureExt, AsyncContext};
        let mut shutdown = self.shutdown.subscribe();
        let wait = async move {
            let _ = shutdown.wait_for(|down| *down).await;
        };
        ctx.spawn(actix::fut::wrap_future::<_, A>(wait).map(move |_, act, _| then(act)));
    }
}

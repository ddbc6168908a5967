//! Wiring: start the registry, the worker arbiters and the listener; stop them again.

use crate::account::Account;
use crate::context::{Live, ServerContext, Stats};
use crate::net::listener::{self, Listener};
use crate::registry::domains::{Service, ServiceKind};
use crate::registry::routes::Replica;
use crate::registry::{self, Attach, Init, Registry};
use crate::rooms::Flush;
use crate::rooms::service::RoomService;
use crate::storage::Storage;
use actix::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use xmppd_proto::auth::sasl::DecoyKey;
use xmppd_proto::config::{ListenerTls, Settings};
use xmppd_proto::net::tls::TlsContext;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {0}")]
    Listen(#[from] std::io::Error),
}

/// A running server.
pub struct Server {
    pub ctx: Arc<ServerContext>,
    /// The addresses actually bound (ports resolved when 0 was configured).
    pub listening: Vec<(SocketAddr, ListenerTls)>,
    listener: Option<Addr<Listener>>,
    workers: Vec<Arbiter>,
    /// The room services, told to store what their rooms have pending at shutdown.
    rooms: Vec<Addr<RoomService>>,
}

impl Server {
    /// Start everything on the current actix system.
    pub async fn start(
        settings: Settings,
        storage: Storage,
        tls: TlsContext,
        log: slog::Logger,
    ) -> Result<Server, ServerError> {
        let sockets = listener::bind_all(&settings).await?;
        let listening = sockets
            .iter()
            .filter_map(|(s, t, _)| s.local_addr().ok().map(|a| (a, *t)))
            .collect();
        let registry_addr = Registry::new(
            settings.domains.iter().map(|d| d.name.clone()),
            log.new(slog::o!("actor" => "registry")),
        )
        .start();
        let registry = registry::reference(&registry_addr);
        let n = if settings.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            settings.workers
        };
        let workers: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
        let (shutdown, _) = tokio::sync::watch::channel(false);
        // on the blocking pool: a backend may block (the PostgreSQL driver cannot run
        // inside this runtime)
        let decoy_iterations = match storage.run(|b| b.iterations_in_use()).await {
            Ok(Some(n)) => n,
            Ok(None) => settings.auth.scram_iterations,
            Err(e) => {
                slog::warn!(log, "cannot read the iteration count in use"; "error" => %e);
                settings.auth.scram_iterations
            }
        };
        let ctx = Arc::new(ServerContext {
            settings: Live::new(settings),
            storage,
            tls,
            registry,
            log,
            decoy: DecoyKey::random(),
            stats: Arc::new(Stats::default()),
            started: Instant::now(),
            shutdown,
            decoy_iterations: decoy_iterations.into(),
            components: Live::new(Vec::new()),
            registrations: Default::default(),
            password_changes: Default::default(),
            removals: Default::default(),
        });
        let replicas = workers
            .iter()
            .map(|w| Replica::start_in_arbiter(&w.handle(), |_| Replica).recipient())
            .collect();
        registry_addr.do_send(Init {
            replicas,
            ctx: ctx.clone(),
            workers: workers.iter().map(|a| a.handle()).collect(),
            start_account: Arc::new(Account::start),
            start_outbound: Arc::new(crate::s2s::OutboundQueue::start),
        });
        // the coarse clock the I/O tasks stamp last activity with
        crate::metrics::tick();
        actix_rt::spawn(async {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                crate::metrics::tick();
            }
        });
        let rooms = start_room_services(&ctx, &registry_addr, &workers).await;
        let listener = (!sockets.is_empty()).then(|| {
            Listener::new(
                ctx.clone(),
                sockets,
                workers.iter().map(|a| a.handle()).collect(),
            )
            .start()
        });
        Ok(Server {
            ctx,
            listening,
            listener,
            workers,
            rooms,
        })
    }

    /// Graceful shutdown: stop accepting, end every stream with `system-shutdown`, wait
    /// for the connections to close, then for the rooms to store what they have not
    /// stored yet: all of it within `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(l) = self.listener.take() {
            l.do_send(StopListening);
        }
        let _ = self.ctx.shutdown.send(true);
        let deadline = Instant::now() + grace;
        while self.ctx.stats.connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        let flushes = self.rooms.iter().map(|r| r.send(Flush));
        let all = futures::future::join_all(flushes);
        // one deadline for both: shutdown takes at most `grace`
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, all).await.is_err() {
            slog::warn!(self.ctx.log, "rooms did not store everything in time");
        }
        for w in self.workers.drain(..) {
            w.stop();
        }
    }
}

/// A room service (XEP-0045) for every hosted domain, attached to the domain table.
async fn start_room_services(
    ctx: &Arc<ServerContext>,
    registry: &Addr<Registry>,
    workers: &[Arbiter],
) -> Vec<Addr<RoomService>> {
    let settings = ctx.settings.get();
    let mut started = Vec::new();
    if !settings.muc.enabled {
        return started;
    }
    for d in &settings.domains {
        let domain = format!("{}.{}", settings.muc.subdomain, d.name);
        let service = RoomService::new(
            domain.clone(),
            ctx.clone(),
            workers.iter().map(|a| a.handle()).collect(),
        )
        .start();
        started.push(service.clone());
        let attach = Attach {
            domain: domain.clone(),
            service: Service {
                kind: ServiceKind::Rooms,
                signals: service.recipient(),
                dismiss: None,
            },
        };
        match registry.send(attach).await {
            Ok(Ok(())) => slog::debug!(ctx.log, "room service started"; "domain" => domain),
            Ok(Err(e)) => {
                slog::warn!(ctx.log, "no room service"; "domain" => domain, "error" => %e)
            }
            Err(e) => slog::warn!(ctx.log, "no room service"; "domain" => domain, "error" => %e),
        }
    }
    started
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopListening;

impl Handler<StopListening> for Listener {
    type Result = ();
    fn handle(&mut self, _: StopListening, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

//! The listener: accepts TCP connections on every configured address, enforces the
//! `channels` cap, and spreads connections over the worker arbiters. Clients, servers
//! and components all arrive here; the stream namespace tells them apart later.

use crate::context::{Ctx, Gauge};
use crate::stream::{Accepted, Connection};
use actix::prelude::*;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use xmppd_proto::config::{ListenerTls, TlsVersion};
use xmppd_proto::ns;
use xmppd_proto::stream::error::{Condition, StreamError};

/// A bound listener socket, how TLS starts on it, and the oldest TLS version accepted.
pub type Bound = (TcpListener, ListenerTls, TlsVersion);

pub struct Listener {
    ctx: Ctx,
    sockets: Vec<Bound>,
    workers: Vec<ArbiterHandle>,
    next: usize,
}

impl Listener {
    pub fn new(ctx: Ctx, sockets: Vec<Bound>, workers: Vec<ArbiterHandle>) -> Self {
        Listener {
            ctx,
            sockets,
            workers,
            next: 0,
        }
    }
}

/// One accepted socket and the listener it came in on.
struct Incoming(
    std::io::Result<(TcpStream, SocketAddr)>,
    ListenerTls,
    TlsVersion,
);

impl Actor for Listener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for (sock, tls, min_tls) in self.sockets.drain(..) {
            let stream = futures::stream::unfold(sock, move |l| async move {
                let r = l.accept().await;
                Some((Incoming(r, tls, min_tls), l))
            });
            ctx.add_stream(stream);
        }
    }
}

impl StreamHandler<Incoming> for Listener {
    fn handle(&mut self, Incoming(res, tls, min_tls): Incoming, ctx: &mut Context<Self>) {
        let (tcp, peer) = match res {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: pause briefly instead of spinning
                slog::error!(self.ctx.log, "accept failed"; "error" => %e);
                ctx.wait(actix::clock::sleep(Duration::from_millis(50)).into_actor(self));
                return;
            }
        };
        let cap = self.ctx.settings.get().channels;
        if self.ctx.stats.connections.load(Ordering::Relaxed) >= cap {
            self.ctx
                .stats
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            slog::warn!(self.ctx.log, # "XMPPI", "connection refused: channels limit reached"; "peer" => %peer, "channels" => cap);
            actix_rt::spawn(refuse(tcp, tls, min_tls, self.ctx.clone()));
            return;
        }
        let _ = tcp.set_nodelay(true);
        let channel = Gauge::new(&self.ctx.stats, |s| &s.connections);
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => {
                slog::error!(self.ctx.log, "socket hand-off failed"; "error" => %e);
                return;
            }
        };
        let Some(worker) = self.workers.get(self.next % self.workers.len().max(1)) else {
            return;
        };
        self.next = self.next.wrapping_add(1);
        let sctx = self.ctx.clone();
        worker.spawn(async move {
            // tokio sockets belong to the reactor that registered them: re-register here
            match TcpStream::from_std(std) {
                Ok(tcp) => {
                    Connection::start(
                        sctx,
                        Accepted {
                            tcp,
                            peer,
                            direct_tls: tls == ListenerTls::Direct,
                            min_tls,
                            channel,
                        },
                    );
                }
                Err(e) => slog::error!(sctx.log, "socket hand-off failed"; "error" => %e),
            }
        });
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// Over the cap: answer with a stream error and close (RFC 6120 §4.9.3.17).
async fn refuse(mut tcp: TcpStream, tls: ListenerTls, min_tls: TlsVersion, ctx: Ctx) {
    let msg = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' version='1.0'>{}",
        ns::CLIENT,
        ns::STREAM,
        StreamError::with_text(Condition::ResourceConstraint, "too many connections").to_xml()
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        match tls {
            ListenerTls::Starttls => {
                let _ = tcp.write_all(msg.as_bytes()).await;
                let _ = tcp.shutdown().await;
            }
            ListenerTls::Direct => {
                let tls = ctx.tls.with_min_version(min_tls);
                if let Ok((mut layer, _)) = tls.accept(&mut tcp).await {
                    let mut out = Vec::new();
                    if layer.seal(msg.as_bytes(), &mut out).is_ok() {
                        layer.close_notify(&mut out);
                    }
                    let _ = tcp.write_all(&out).await;
                    let _ = tcp.shutdown().await;
                }
            }
        }
    })
    .await;
}

/// Bind every configured listener address (none when `channels` is 0).
pub async fn bind_all(settings: &xmppd_proto::config::Settings) -> std::io::Result<Vec<Bound>> {
    let mut v = Vec::new();
    if settings.channels == 0 {
        return Ok(v);
    }
    for l in &settings.listeners {
        let sock = TcpListener::bind(l.address)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", l.address)))?;
        v.push((sock, l.tls, l.min_tls_version));
    }
    Ok(v)
}

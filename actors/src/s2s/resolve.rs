//! Finding a remote domain's server (RFC 6120 §3.2, XEP-0368): a router record from the
//! configuration, else SRV `_xmpps-server._tcp` (direct TLS) and `_xmpp-server._tcp`
//! (STARTTLS), else the domain itself on port 5269. Host names are resolved through the
//! configured DNS server when one is set, else through the system's resolver order
//! (getaddrinfo: the hosts file counts).

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use std::net::SocketAddr;
use std::time::Duration;
use xmppd_proto::config::Settings;
use xmppd_proto::s2s::routes;

/// Each DNS lookup waits at most this long.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One place to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// TLS from the first byte (XEP-0368).
    pub direct_tls: bool,
    /// The relay name a router record gave: the certificate may carry it instead of the
    /// domain.
    pub relay: Option<String>,
}

/// Where to try for `domain`, best first.
pub async fn targets(settings: &Settings, domain: &str) -> Vec<Target> {
    if let Some(r) = routes::lookup(&settings.routes, domain) {
        return vec![Target {
            host: r.host.clone(),
            port: r.port,
            direct_tls: r.direct_tls,
            relay: Some(r.host.clone()),
        }];
    }
    let mut out = Vec::new();
    if let Some(resolver) = resolver(&settings.s2s.resolver) {
        for (service, direct_tls) in [("_xmpps-server._tcp", true), ("_xmpp-server._tcp", false)] {
            let name = format!("{service}.{}.", domain.trim_end_matches('.'));
            let Ok(Ok(l)) = tokio::time::timeout(LOOKUP_TIMEOUT, resolver.srv_lookup(name)).await
            else {
                continue;
            };
            let mut srv: Vec<_> = l
                .answers()
                .iter()
                .filter_map(|rec| match &rec.data {
                    RData::SRV(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            // RFC 2782: lowest priority first, higher weight first within it
            srv.sort_by_key(|s| (s.priority, std::cmp::Reverse(s.weight)));
            for s in srv {
                let host = s.target.to_ascii();
                let host = host.trim_end_matches('.');
                // RFC 2782: "." means the service is decidedly not available
                if host.is_empty() {
                    continue;
                }
                out.push(Target {
                    host: host.to_string(),
                    port: s.port,
                    direct_tls,
                    relay: None,
                });
            }
        }
    }
    if out.is_empty() {
        out.push(Target {
            host: domain.to_string(),
            port: 5269,
            direct_tls: false,
            relay: None,
        });
    }
    out
}

/// The addresses of a target's host: literal IPs as they are, names through the
/// configured DNS server or the system's resolver.
pub async fn addresses(settings: &Settings, t: &Target) -> Vec<SocketAddr> {
    if let Ok(ip) = t.host.parse::<std::net::IpAddr>() {
        return vec![SocketAddr::new(ip, t.port)];
    }
    if !settings.s2s.resolver.is_empty()
        && let Some(r) = resolver(&settings.s2s.resolver)
    {
        return match tokio::time::timeout(LOOKUP_TIMEOUT, r.lookup_ip(t.host.as_str())).await {
            Ok(Ok(l)) => l.iter().map(|ip| SocketAddr::new(ip, t.port)).collect(),
            _ => Vec::new(),
        };
    }
    match tokio::time::timeout(
        LOOKUP_TIMEOUT,
        tokio::net::lookup_host((t.host.as_str(), t.port)),
    )
    .await
    {
        Ok(Ok(a)) => a.collect(),
        _ => Vec::new(),
    }
}

/// The DNS resolver: the configured server ("IP:port"), or the system's configuration.
fn resolver(configured: &str) -> Option<TokioResolver> {
    let mut b = if configured.is_empty() {
        Resolver::builder_tokio().ok()?
    } else {
        let addr: SocketAddr = configured.parse().ok()?;
        let mut ns = NameServerConfig::udp(addr.ip());
        for c in &mut ns.connections {
            c.port = addr.port();
        }
        Resolver::builder_with_config(
            ResolverConfig::from_parts(None, vec![], vec![ns]),
            TokioRuntimeProvider::default(),
        )
    };
    let o: &mut ResolverOpts = b.options_mut();
    o.timeout = Duration::from_secs(2);
    o.attempts = 1;
    b.build().ok()
}

//! The registry of live connections the monitor lists: one [`ConnInfo`] per
//! connection, whose atomics the I/O task (bytes, elements read) and the session
//! (stanzas written) bump, and whose fields are set once at TLS, authentication and
//! binding. The map is locked when a connection opens or closes and when the HTTP side
//! lists it, never per stanza. An administrator's close reaches the stream's current
//! actor (the connection, then its session) as a stream error.

use crate::metrics::{METRICS, unix_now};
use crate::net::io::FromIo;
use actix::{Recipient, WeakRecipient};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What kind of peer a connection carries (known once its first header arrives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnKind {
    Unknown = 0,
    Client = 1,
    ServerIn = 2,
    ServerOut = 3,
    Component = 4,
}

impl ConnKind {
    pub const ALL: [ConnKind; 5] = [
        ConnKind::Unknown,
        ConnKind::Client,
        ConnKind::ServerIn,
        ConnKind::ServerOut,
        ConnKind::Component,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ConnKind::Unknown => "negotiating",
            ConnKind::Client => "client",
            ConnKind::ServerIn => "server_in",
            ConnKind::ServerOut => "server_out",
            ConnKind::Component => "component",
        }
    }

    /// The kind of an inbound stream with this default namespace.
    pub fn of_namespace(ns: &str) -> ConnKind {
        match ns {
            xmppd_proto::ns::CLIENT => ConnKind::Client,
            "jabber:server" => ConnKind::ServerIn,
            "jabber:component:accept" => ConnKind::Component,
            _ => ConnKind::Unknown,
        }
    }

    fn from_u8(v: u8) -> ConnKind {
        ConnKind::ALL
            .get(usize::from(v))
            .copied()
            .unwrap_or(ConnKind::Unknown)
    }
}

/// One live connection as the monitor shows it. The counters are bumped by the
/// connection's I/O task and session; the rest is set once at TLS, authentication
/// and binding.
pub struct ConnInfo {
    pub id: u64,
    pub remote: SocketAddr,
    /// Seconds since the epoch.
    pub since: u64,
    kind: AtomicU8,
    /// The authenticated JID (a client's, full once bound) or domain (a server's,
    /// a component's).
    identity: Mutex<String>,
    tls: OnceLock<(&'static str, &'static str)>,
    mechanism: OnceLock<&'static str>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub stanzas_in: AtomicU64,
    pub stanzas_out: AtomicU64,
    /// Seconds since the epoch (the coarse clock).
    pub last_activity: AtomicU64,
    /// The actor that owns the stream now (the connection, then its session): an
    /// administrator's close is sent there.
    /// Weak: the registry must not keep a stopped actor's mailbox alive (the actor
    /// holds this entry through its connection).
    control: Mutex<Option<WeakRecipient<FromIo>>>,
}

/// A snapshot of a [`ConnInfo`] for the monitor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnRow {
    pub id: u64,
    pub kind: &'static str,
    pub remote: String,
    pub identity: String,
    pub tls_version: Option<&'static str>,
    pub tls_cipher: Option<&'static str>,
    pub mechanism: Option<&'static str>,
    pub since: u64,
    pub stanzas_in: u64,
    pub stanzas_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub last_activity: u64,
}

impl ConnInfo {
    pub fn kind(&self) -> ConnKind {
        ConnKind::from_u8(self.kind.load(Ordering::Relaxed))
    }

    pub fn set_kind(&self, k: ConnKind) {
        self.kind.store(k as u8, Ordering::Relaxed);
    }

    pub fn set_identity(&self, who: &str) {
        let mut g = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        who.clone_into(&mut g);
    }

    /// TLS came up with this protocol version and cipher suite.
    pub fn set_tls(&self, version: &'static str, cipher: &'static str) {
        if self.tls.set((version, cipher)).is_ok() {
            METRICS.tls_established.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn is_tls(&self) -> bool {
        self.tls.get().is_some()
    }

    pub fn set_mechanism(&self, m: &'static str) {
        let _ = self.mechanism.set(m);
    }

    /// The actor that owns the stream from now on.
    pub fn set_control(&self, r: Recipient<FromIo>) {
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.downgrade());
    }

    /// Close the stream with this stream error (an administrator's request); false
    /// when its actor is gone.
    pub fn close_with(&self, err: xmppd_proto::stream::error::StreamError) -> bool {
        let r = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(WeakRecipient::upgrade);
        match r {
            Some(r) => r.try_send(FromIo::ParseError(err)).is_ok(),
            None => false,
        }
    }

    /// Bytes read in one read; stamps the last activity.
    #[inline]
    pub fn note_read(&self, bytes: usize) {
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
        self.last_activity.store(METRICS.now(), Ordering::Relaxed);
    }

    /// Top-level elements read, handed on in one batch.
    #[inline]
    pub fn note_stanzas_in(&self, n: usize) {
        self.stanzas_in.fetch_add(n as u64, Ordering::Relaxed);
    }

    #[inline]
    pub fn note_written(&self, bytes: usize) {
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    #[inline]
    pub fn note_stanza_out(&self) {
        self.stanzas_out.fetch_add(1, Ordering::Relaxed);
    }

    pub fn row(&self) -> ConnRow {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let tls = self.tls.get();
        ConnRow {
            id: self.id,
            kind: self.kind().name(),
            remote: self.remote.to_string(),
            identity: self
                .identity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            tls_version: tls.map(|t| t.0),
            tls_cipher: tls.map(|t| t.1),
            mechanism: self.mechanism.get().copied(),
            since: self.since,
            stanzas_in: l(&self.stanzas_in),
            stanzas_out: l(&self.stanzas_out),
            bytes_in: l(&self.bytes_in),
            bytes_out: l(&self.bytes_out),
            last_activity: l(&self.last_activity),
        }
    }
}

static CONNS: Mutex<BTreeMap<u64, Arc<ConnInfo>>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn conns() -> std::sync::MutexGuard<'static, BTreeMap<u64, Arc<ConnInfo>>> {
    CONNS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every live connection.
pub fn connections() -> Vec<Arc<ConnInfo>> {
    conns().values().cloned().collect()
}

/// What `/metrics` reads of the registry, in one pass under its lock (no copy of it).
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Live connections by [`ConnKind`] (indexed by `kind as usize`).
    pub by_kind: [u64; ConnKind::ALL.len()],
    pub live: u64,
    /// Live connections with TLS up.
    pub tls: u64,
    /// Bytes and stanzas of all connections since the start, closed and live.
    pub traffic: crate::metrics::Traffic,
}

/// The registry's [`Summary`]. The closed totals are read under the same lock a closing
/// connection moves its traffic to them under: the totals never go backwards.
pub fn summary() -> Summary {
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let map = conns();
    let c = &METRICS.closed;
    let mut s = Summary {
        traffic: (
            l(&c.bytes_in),
            l(&c.bytes_out),
            l(&c.stanzas_in),
            l(&c.stanzas_out),
        ),
        ..Summary::default()
    };
    for i in map.values() {
        s.by_kind[i.kind() as usize] += 1;
        s.live += 1;
        s.tls += u64::from(i.is_tls());
        s.traffic.0 += l(&i.bytes_in);
        s.traffic.1 += l(&i.bytes_out);
        s.traffic.2 += l(&i.stanzas_in);
        s.traffic.3 += l(&i.stanzas_out);
    }
    s
}

/// One live connection by its monitor id.
pub fn connection(id: u64) -> Option<Arc<ConnInfo>> {
    conns().get(&id).cloned()
}

/// A connection's place in the registry: listed while this lives (the I/O task holds
/// it), its traffic added to the closed totals when dropped.
pub struct Registered(Arc<ConnInfo>);

impl Registered {
    pub fn new(remote: SocketAddr, kind: ConnKind) -> Registered {
        // the coarse clock, as last activity is stamped with (it never looks earlier)
        let now = match METRICS.now() {
            0 => unix_now(),
            n => n,
        };
        let info = Arc::new(ConnInfo {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            remote,
            since: now,
            kind: AtomicU8::new(kind as u8),
            identity: Mutex::new(String::new()),
            tls: OnceLock::new(),
            mechanism: OnceLock::new(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            stanzas_in: AtomicU64::new(0),
            stanzas_out: AtomicU64::new(0),
            last_activity: AtomicU64::new(now),
            control: Mutex::new(None),
        });
        METRICS.connections_accepted.fetch_add(1, Ordering::Relaxed);
        conns().insert(info.id, info.clone());
        Registered(info)
    }

    pub fn info(&self) -> &Arc<ConnInfo> {
        &self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let i = &self.0;
        {
            // out of the map and into the closed totals at once: a reader (under the
            // same lock) sees the traffic in one place or the other, never neither
            let mut map = conns();
            map.remove(&i.id);
            let c = &METRICS.closed;
            let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
            c.bytes_in.fetch_add(l(&i.bytes_in), Ordering::Relaxed);
            c.bytes_out.fetch_add(l(&i.bytes_out), Ordering::Relaxed);
            c.stanzas_in.fetch_add(l(&i.stanzas_in), Ordering::Relaxed);
            c.stanzas_out
                .fetch_add(l(&i.stanzas_out), Ordering::Relaxed);
        }
        *i.control.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lists_live_connections_and_keeps_closed_traffic() {
        let before = METRICS.traffic();
        let r = Registered::new("127.0.0.1:1".parse().expect("addr"), ConnKind::Unknown);
        let id = r.info().id;
        r.info().note_read(100);
        r.info().note_stanzas_in(2);
        r.info().note_written(40);
        r.info().note_stanza_out();
        r.info().set_kind(ConnKind::of_namespace("jabber:client"));
        r.info().set_tls("TLSv1_3", "TLS13_AES_128_GCM_SHA256");
        r.info().set_mechanism("PLAIN");
        r.info().set_identity("a@b/c");
        let row = connection(id).expect("listed").row();
        assert_eq!(
            (
                row.kind,
                row.identity.as_str(),
                row.tls_version,
                row.mechanism
            ),
            ("client", "a@b/c", Some("TLSv1_3"), Some("PLAIN"))
        );
        assert_eq!(
            (row.bytes_in, row.stanzas_in, row.bytes_out, row.stanzas_out),
            (100, 2, 40, 1)
        );
        drop(r);
        assert!(connection(id).is_none());
        let after = METRICS.traffic();
        // other tests may run alongside: at least ours was kept
        assert!(after.0 >= before.0 + 100 && after.3 > before.3);
    }
}

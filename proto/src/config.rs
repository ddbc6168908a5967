//! The settings the engine runs on, as read from the TOML configuration.
//!
//! The daemon shell (`src/config.rs`) loads and validates the file; this module only
//! holds the schema and its defaults. Every bound a peer can push against has a default
//! here, and `config/xmppd.toml` documents each one.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the embedded database, generated certificates and other state live.
    pub data_dir: PathBuf,
    /// Major | Problems | Low-Level | All Info (see `LogLevel`).
    pub log_level: LogLevel,
    /// Per-tag log level overrides, e.g. `{ XMPPI = "all" }`.
    pub log_tags: std::collections::BTreeMap<String, LogLevel>,
    /// Maximum concurrent connections; 0 means no listener at all.
    pub channels: usize,
    /// Worker arbiters for connections; 0 means one per core.
    pub workers: usize,
    #[serde(rename = "domain")]
    pub domains: Vec<DomainSettings>,
    #[serde(rename = "listener")]
    pub listeners: Vec<ListenerSettings>,
    pub tls: TlsSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub storage: StorageSettings,
    /// Trusted components (XEP-0114) that may attach, by domain.
    pub components: Vec<ComponentSettings>,
    pub http: HttpSettings,
    pub s2s: S2sSettings,
    /// Router records: how to reach a remote domain, overriding DNS.
    #[serde(rename = "routes")]
    pub routes: Vec<RouteSettings>,
    pub muc: MucSettings,
    /// Server administrators: bare JIDs of local accounts who may use the WebAdmin and
    /// the XEP-0133 service-administration commands.
    pub admins: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("./data"),
            log_level: LogLevel::Problems,
            log_tags: Default::default(),
            channels: 20_000,
            workers: 0,
            domains: vec![DomainSettings::named("localhost")],
            listeners: vec![
                ListenerSettings::new("0.0.0.0:5222", ListenerTls::Starttls),
                ListenerSettings::new("0.0.0.0:5269", ListenerTls::Starttls),
                ListenerSettings::new("0.0.0.0:5223", ListenerTls::Direct),
            ],
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            limits: LimitSettings::default(),
            storage: StorageSettings::default(),
            components: Vec::new(),
            http: HttpSettings::default(),
            s2s: S2sSettings::default(),
            routes: Vec::new(),
            muc: MucSettings::default(),
            admins: Vec::new(),
        }
    }
}

impl Settings {
    pub fn domain(&self, name: &str) -> Option<&DomainSettings> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// Whether the bare JID `user@domain` is listed in `admins` (compared case-insensitively,
    /// as account names and domains are).
    pub fn is_admin(&self, user: &str, domain: &str) -> bool {
        self.admins.iter().any(|a| {
            a.split_once('@').is_some_and(|(u, d)| {
                u.eq_ignore_ascii_case(user) && d.eq_ignore_ascii_case(domain)
            })
        })
    }

    /// Whether `name` (lower case) is a domain of this server for other servers: a
    /// hosted domain, the room service of one (`<muc.subdomain>.<domain>` while rooms
    /// are on), or a configured component. Remote servers may send to it and must
    /// authenticate it when it sends to them (its dialback is answered here).
    pub fn served_here(&self, name: &str) -> bool {
        if self.domain(name).is_some() || self.component(name).is_some() {
            return true;
        }
        self.muc.enabled
            && name
                .strip_prefix(self.muc.subdomain.as_str())
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|d| self.domain(d).is_some())
    }

    /// The configured component whose domain is `name` (case-insensitive).
    pub fn component(&self, name: &str) -> Option<&ComponentSettings> {
        self.components
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }
}

/// A trusted component (XEP-0114): a service (a gateway, say) that connects to the
/// server with a shared secret and then serves every JID of its domain.
#[derive(Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentSettings {
    /// The component's domain (the stream header's `to`); never a hosted domain.
    pub name: String,
    /// The shared secret of the handshake.
    pub secret: String,
    /// A second connection for the domain while one is attached: `false` refuses it
    /// with `conflict`, `true` closes the first (with `conflict`) and takes its place.
    pub replace: bool,
    /// The name shown for it in disco#items (none when empty).
    pub description: String,
}

impl std::fmt::Debug for ComponentSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentSettings")
            .field("name", &self.name)
            .field("secret", &"***")
            .field("replace", &self.replace)
            .field("description", &self.description)
            .finish()
    }
}

/// Log levels, from least to most verbose (CommuniGate Pro's names).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    #[serde(rename = "none")]
    None,
    /// Message transfer reports and fatal errors.
    #[serde(rename = "major", alias = "Major")]
    Major,
    /// Plus transfer and non-fatal errors.
    #[serde(rename = "problems", alias = "Problems")]
    Problems,
    /// Plus protocol and link level events.
    #[serde(rename = "low-level", alias = "Low-Level")]
    LowLevel,
    /// Plus the XML itself (passwords masked).
    #[serde(rename = "all", alias = "All Info", alias = "all-info")]
    AllInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DomainSettings {
    pub name: String,
    /// TLS must be negotiated before authentication.
    pub require_tls: bool,
    /// Offer PLAIN (and legacy plaintext auth) on streams without TLS.
    pub plain_without_tls: bool,
    /// Offer SASL ANONYMOUS: a throwaway account for the length of the session.
    pub anonymous: bool,
    /// PEM certificate chain and key for this domain; empty uses `[tls]`.
    pub certificate: String,
    pub key: String,
    /// "Auto Signup": anyone may create an account on this domain in-band (XEP-0077)
    /// before authenticating, under `limits.registrations_per_ip`.
    pub auto_signup: bool,
    /// "Allow to Modify Password": users may change their password in-band (XEP-0077).
    pub allow_modify_password: bool,
    /// Supplementary service discovery items: what disco#items of the domain (the
    /// server, as this domain) lists besides the services attached to it.
    pub disco_items: Vec<DiscoItem>,
}

/// One administrator-configured disco#items entry (XEP-0030 §4): a JID, with an
/// optional name and node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiscoItem {
    pub jid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl DomainSettings {
    pub fn named(name: &str) -> Self {
        DomainSettings {
            name: name.to_string(),
            ..Default::default()
        }
    }
}

impl Default for DomainSettings {
    fn default() -> Self {
        DomainSettings {
            name: String::new(),
            require_tls: true,
            plain_without_tls: false,
            anonymous: false,
            certificate: String::new(),
            key: String::new(),
            auto_signup: false,
            allow_modify_password: true,
            disco_items: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    pub address: SocketAddr,
    #[serde(default)]
    pub tls: ListenerTls,
    /// The oldest TLS version accepted on this listener ("1.2" or "1.3").
    #[serde(default)]
    pub min_tls_version: TlsVersion,
}

impl ListenerSettings {
    fn new(address: &str, tls: ListenerTls) -> Self {
        ListenerSettings {
            address: address.parse().expect("literal"),
            tls,
            min_tls_version: TlsVersion::default(),
        }
    }
}

/// A TLS protocol version. TLS 1.2 connections use ECDHE with AEAD suites only and
/// must negotiate the extended master secret (RFC 7627).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

/// How TLS starts on a listener: in-band (STARTTLS, RFC 6120) or at connect (XEP-0368).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    #[default]
    Starttls,
    Direct,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain; empty: a self-signed certificate is generated under
    /// `data_dir/certs` on first start and reused after.
    pub certificate: String,
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `scram`: only SCRAM keys are stored; `plain`: the password is also kept in a
    /// reversible form so that legacy digest authentication can be offered.
    pub password_format: PasswordFormat,
    /// PBKDF2 iterations for new passwords; at least 4096 (RFC 7677).
    pub scram_iterations: u32,
    /// XEP-0078 `jabber:iq:auth` for old clients.
    pub legacy_auth: bool,
    /// Failed attempts on one stream before it is closed.
    pub max_failures: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            password_format: PasswordFormat::Scram,
            scram_iterations: 10_000,
            legacy_auth: true,
            max_failures: 3,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum PasswordFormat {
    #[default]
    Scram,
    Plain,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Largest stanza accepted, in bytes; larger ones end the stream with policy-violation.
    pub max_stanza_size: usize,
    /// Deepest element nesting inside a stanza.
    pub max_depth: usize,
    /// Bytes queued for a peer that does not read before it is disconnected.
    pub write_buffer: usize,
    /// Seconds a connection may take to authenticate and bind.
    pub auth_timeout: u64,
    /// Seconds for a TLS handshake.
    pub tls_timeout: u64,
    /// Sustained bytes per second read from one connection; reads beyond it are delayed
    /// (nothing is dropped). 0 turns shaping off.
    pub read_rate: u64,
    /// Bytes one connection may send at once above the sustained rate (the bucket size).
    pub read_burst: u64,
    /// Resources one account may bind at the same time.
    pub max_sessions_per_account: usize,
    /// Failed authentications from one IP address (IPv6: one /64) within
    /// `auth_throttle_window` before further attempts from it are refused with
    /// `temporary-auth-failure` until the window ends. 0 turns it off.
    pub auth_failures_per_ip: u32,
    /// The same, counted per account name, whatever the address.
    pub auth_failures_per_account: u32,
    /// Seconds over which failures are counted, and for which a throttled address or
    /// account stays refused.
    pub auth_throttle_window: u64,
    /// Addresses and accounts the throttle remembers at most (each); the oldest are
    /// forgotten first.
    pub auth_throttle_entries: usize,
    /// Connections from one IP address (IPv6: one /64) that have not authenticated yet;
    /// more are closed with `policy-violation`. 0 turns the cap off.
    pub unauthenticated_per_ip: usize,
    /// In-band registrations (accounts created, or names found taken) from one IP
    /// address (IPv6: one /64) within `registration_window`; more are refused with
    /// `resource-constraint` until the window ends. 0 turns the limit off.
    pub registrations_per_ip: u32,
    /// In-band registrations from one IPv6 /48 within `registration_window` (however
    /// many /64s it spans); 0 turns this tier off.
    pub registrations_per_48: u32,
    /// In-band registrations on the whole server within `registration_window`; 0 turns
    /// this tier off.
    pub registrations_global: u32,
    /// Seconds over which registrations are counted.
    pub registration_window: u64,
    /// In-band password changes (XEP-0077 §3.3) per account within
    /// `password_change_window`; more get `resource-constraint`. 0 turns it off.
    pub password_changes_per_account: u32,
    /// Seconds over which password changes are counted.
    pub password_change_window: u64,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            max_stanza_size: 256 * 1024,
            max_depth: 32,
            write_buffer: 1024 * 1024,
            auth_timeout: 60,
            tls_timeout: 20,
            read_rate: 64 * 1024,
            read_burst: 512 * 1024,
            max_sessions_per_account: 64,
            auth_failures_per_ip: 10,
            auth_failures_per_account: 10,
            auth_throttle_window: 300,
            auth_throttle_entries: 65_536,
            unauthenticated_per_ip: 100,
            registrations_per_ip: 5,
            registrations_per_48: 20,
            registrations_global: 500,
            registration_window: 3600,
            password_changes_per_account: 10,
            password_change_window: 3600,
        }
    }
}

/// Which database holds the durable state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The embedded SQLite file under `data_dir`.
    #[default]
    Sqlite,
    /// A PostgreSQL server (`postgres_url`).
    Postgres,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `sqlite` (embedded, the default) or `postgres`.
    pub backend: StorageBackend,
    /// SQLite database file, relative to `data_dir` unless absolute.
    pub database: PathBuf,
    /// PostgreSQL connection string (key=value or `postgresql://` URL).
    pub postgres_url: String,
    /// Read connections open at most (either backend); more readers wait for one.
    pub read_connections: usize,
    /// Messages kept for an offline account; beyond it senders get an error.
    pub max_offline_messages: usize,
    /// Writes waiting for the database writer at most; callers beyond it wait.
    pub write_queue: usize,
    /// Writes committed in one transaction at most.
    pub write_batch: usize,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            backend: StorageBackend::Sqlite,
            database: PathBuf::from("xmppd.sqlite"),
            postgres_url: String::new(),
            read_connections: 8,
            max_offline_messages: 1000,
            write_queue: 4096,
            write_batch: 256,
        }
    }
}

/// The HTTP side: `/metrics`, `/monitor`, `/stats` (and later the WebAdmin).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Serve HTTP at all.
    pub enabled: bool,
    /// Where to listen. Without administrator authentication (not there yet) only a
    /// loopback address is accepted.
    pub address: SocketAddr,
    /// Requests served at once at most; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 5280)),
            max_connections: 32,
        }
    }
}

/// A router record: every signal for `domain` (or, with `*.company.dom`, for any
/// subdomain and the domain itself) goes to `host`:`port` instead of where DNS says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteSettings {
    pub domain: String,
    /// Relay host name or IP address; its certificate may carry this name.
    pub host: String,
    #[serde(default = "default_s2s_port")]
    pub port: u16,
    /// TLS from the first byte (XEP-0368) instead of STARTTLS.
    #[serde(default)]
    pub direct_tls: bool,
}

fn default_s2s_port() -> u16 {
    5269
}

/// Federation (server-to-server) settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S2sSettings {
    /// Accept inbound server streams and open outbound ones.
    pub enabled: bool,
    /// DNS server for SRV and address lookups ("127.0.0.1:5353"); empty: the system's.
    pub resolver: String,
    /// Seconds a signal may wait for an unreachable peer before it is bounced.
    pub bounce_after: u64,
    /// Signals waiting per (remote, local) domain pair; more are bounced at once.
    pub queue_limit: usize,
    /// Seconds an outgoing stream may stay unused before it is closed.
    pub idle_timeout: u64,
    /// Seconds to connect and authenticate an outgoing stream.
    pub connect_timeout: u64,
    /// Seconds one TCP connect (one address) may take before the next address is
    /// tried, within `connect_timeout`.
    pub connect_attempt_timeout: u64,
    /// Seconds a write on an outgoing stream may wait for the peer to read; then the
    /// link gives up and what it held waits again in its queue.
    pub write_timeout: u64,
    /// Seconds an inbound dialback request waits for the authoritative server's
    /// answer; then `db:result type='error'` with `remote-server-not-found`. Reaching
    /// that server may take `connect_timeout` plus 10 s for its dialback answer: keep
    /// it at least that (the default, 40, is for `connect_timeout` = 30).
    pub verify_timeout: u64,
    /// First wait before retrying a failed connection; doubles up to `retry_max`.
    pub retry_initial: u64,
    pub retry_max: u64,
    /// Domains (patterns like `*.company.dom`) reached only over TLS with a certificate
    /// that validates against `trusted_certificates` and names the domain or its relay.
    pub secure_domains: Vec<String>,
    /// PEM files of certificates (CAs) trusted for server certificates, besides the
    /// system's trust store.
    pub trusted_certificates: Vec<String>,
    /// The dialback secret (XEP-0185); empty: a random one per process.
    pub dialback_secret: String,
    /// Domain pairs one inbound stream may authenticate (verified or being verified).
    pub max_domain_pairs: usize,
    /// Outbound queues (remote/local domain pairs reached at once) at most; beyond it
    /// signals bounce and dialback verifications are refused with `resource-constraint`.
    pub max_outbound_queues: usize,
}

impl Default for S2sSettings {
    fn default() -> Self {
        S2sSettings {
            enabled: true,
            resolver: String::new(),
            bounce_after: 300,
            queue_limit: 1000,
            idle_timeout: 600,
            connect_timeout: 30,
            connect_attempt_timeout: 10,
            write_timeout: 30,
            verify_timeout: 40,
            retry_initial: 5,
            retry_max: 60,
            secure_domains: Vec::new(),
            trusted_certificates: Vec::new(),
            dialback_secret: String::new(),
            max_domain_pairs: 100,
            max_outbound_queues: 1000,
        }
    }
}

/// Chat rooms (XEP-0045): one room service per hosted domain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MucSettings {
    /// Run a room service for every hosted domain.
    pub enabled: bool,
    /// The service of domain `d` is `<subdomain>.d`.
    pub subdomain: String,
    /// Occupants of one room at most (a room's own limit may be lower).
    pub max_occupants: usize,
    /// Messages a room keeps as history for newcomers.
    pub history: usize,
    /// Messages one occupant may send per minute; beyond: resource-constraint. 0: no limit.
    pub messages_per_minute: u32,
    /// Rooms running at once per service; creating more is refused (resource-constraint).
    pub max_rooms: usize,
    /// Rooms one user may have created that still exist: running ones and saved
    /// (persistent) ones, running or not.
    pub max_rooms_per_user: usize,
    /// Saved (persistent) rooms per service at most; while there are this many, no new
    /// room may be created (resource-constraint).
    pub max_saved_rooms: usize,
    /// Only users of hosted domains may create rooms; others get `not-allowed`
    /// (XEP-0045 §10.1.1). They may still enter existing rooms.
    pub local_creators_only: bool,
    /// Seconds a persistent room with nobody in it keeps running before its actor stops.
    pub idle_timeout: u64,
    /// Signals waiting for one room at most; beyond: resource-constraint.
    pub room_mailbox: usize,
}

impl Default for MucSettings {
    fn default() -> Self {
        MucSettings {
            enabled: true,
            subdomain: "conference".to_string(),
            max_occupants: 200,
            history: 20,
            messages_per_minute: 120,
            max_rooms: 10_000,
            max_rooms_per_user: 20,
            max_saved_rooms: 10_000,
            local_creators_only: true,
            idle_timeout: 300,
            room_mailbox: 4096,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_and_components_are_served_here_for_other_servers() {
        let mut s = Settings {
            domains: vec![DomainSettings::named("a.example")],
            components: vec![ComponentSettings {
                name: "irc.a.example".into(),
                secret: "long enough secret".into(),
                ..Default::default()
            }],
            ..Settings::default()
        };
        for d in ["a.example", "conference.a.example", "irc.a.example"] {
            assert!(s.served_here(d), "{d}");
        }
        for d in [
            "b.example",
            "conference.b.example",
            "conferencea.example",
            "x.conference.a.example",
            "conference.",
        ] {
            assert!(!s.served_here(d), "{d}");
        }
        s.muc.enabled = false;
        assert!(!s.served_here("conference.a.example"));
        s.muc.enabled = true;
        s.muc.subdomain = "rooms".into();
        assert!(s.served_here("rooms.a.example"));
        assert!(!s.served_here("conference.a.example"));
    }
}

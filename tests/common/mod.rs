//! Test harness: the real daemon on ephemeral loopback ports with a temporary data
//! directory, a test PKI, and a raw XML client for protocol details.
#![allow(dead_code)]

pub mod postgres;
pub mod register;
pub mod web;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A CA and a server certificate for localhost and the *.test domains, shared by every
/// test of this process.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "xmppd test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().expect("key");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = Issuer::new(ca, ca_key);
        let names: Vec<String> = [
            "localhost",
            "a.test",
            "*.a.test",
            "b.test",
            "*.b.test",
            "c.test",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut leaf = CertificateParams::new(names).expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let leaf_key = KeyPair::generate().expect("key");
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf");
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("ca.pem"), ca_cert.pem()).expect("write");
        std::fs::write(p("server.pem"), leaf_cert.pem()).expect("write");
        std::fs::write(p("server.key"), leaf_key.serialize_pem()).expect("write");
        // Clients that read the system trust store (tokio-xmpp) find the test CA here.
        // SAFETY: set once, before any client of this process reads it.
        unsafe { std::env::set_var("SSL_CERT_FILE", p("ca.pem")) };
        Pki {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
            _dir: dir,
        }
    })
}

/// How to start a daemon.
pub struct Options {
    pub domain: String,
    /// Extra TOML appended to the generated configuration.
    pub extra: String,
    /// Top-level keys (must come before any table).
    pub top: String,
    pub accounts: Vec<(String, String)>,
    pub log_level: String,
    /// Store in a PostgreSQL server started for this daemon instead of SQLite. The
    /// default comes from `XMPPD_TEST_BACKEND=postgres`, which runs any test file
    /// against PostgreSQL.
    pub postgres: bool,
    /// Extra keys for both listeners (e.g. `min_tls_version = "1.3"`).
    pub listener: String,
    /// Extra keys for the domain (e.g. `auto_signup = true`).
    pub domain_keys: String,
}

/// Whether `XMPPD_TEST_BACKEND` asks for PostgreSQL ("sqlite" or unset: SQLite).
pub fn postgres_by_default() -> bool {
    match std::env::var("XMPPD_TEST_BACKEND").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("XMPPD_TEST_BACKEND={other}: expected sqlite or postgres"),
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            domain: "localhost".into(),
            extra: String::new(),
            top: String::new(),
            accounts: vec![
                ("alice".into(), "alice-pw".into()),
                ("bob".into(), "bob-pw".into()),
            ],
            log_level: "low-level".into(),
            postgres: postgres_by_default(),
            listener: String::new(),
            domain_keys: String::new(),
        }
    }
}

/// A running xmppd process.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub starttls: SocketAddr,
    pub direct_tls: SocketAddr,
    pub domain: String,
    stderr: PathBuf,
    /// The PostgreSQL server this daemon stores in (stopped after the daemon).
    pub pg: Option<postgres::PgServer>,
}

pub fn xmppd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_xmppd")
}

/// `xmppd check-config` on a configuration file holding `text`: whether it passed, and
/// what it printed.
#[allow(dead_code)]
pub fn check_config(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("xmppd.toml");
    std::fs::write(&cfg, text).expect("write");
    let out = Command::new(xmppd_bin())
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .expect("run");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Kill the daemon if the test process dies (no process is left behind).
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::with(Options::default())
    }

    pub fn with(o: Options) -> Daemon {
        let pki = pki();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("xmppd.toml");
        let pg = o.postgres.then(postgres::PgServer::start);
        let mut extra = o.extra.clone();
        if !extra.contains("[http]") {
            // every test daemon has its HTTP side, on a port of its own
            extra.push_str("\n[http]\naddress = \"127.0.0.1:0\"\n");
        }
        if let Some(pg) = &pg {
            let keys = format!(
                "[storage]\nbackend = \"postgres\"\npostgres_url = \"{}\"\n",
                pg.url("xmppd")
            );
            extra = if extra.contains("[storage]\n") {
                extra.replace("[storage]\n", &keys)
            } else {
                format!("{extra}\n{keys}")
            };
        }
        // Federation is off unless the test configures it (`[s2s]` in `extra`, with its
        // own resolver): no test may look a name up beyond loopback.
        if !extra.contains("[s2s]") {
            extra = format!("{extra}\n[s2s]\nenabled = false\n");
        }
        let text = format!(
            "data_dir = \"{data}\"\nlog_level = \"{level}\"\n{top}\n\
             [[domain]]\nname = \"{domain}\"\n{domain_keys}\n\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"starttls\"\n{listener}\n\n\
             [[listener]]\naddress = \"127.0.0.1:0\"\ntls = \"direct\"\n{listener}\n\n\
             [tls]\ncertificate = \"{cert}\"\nkey = \"{key}\"\n\n{extra}\n",
            data = dir.path().join("data").display(),
            level = o.log_level,
            top = o.top,
            domain = o.domain,
            cert = pki.cert.display(),
            key = pki.key.display(),
            extra = extra,
            listener = o.listener,
            domain_keys = o.domain_keys,
        );
        std::fs::write(&config, text).expect("write config");
        let stderr = dir.path().join("xmppd.log");
        let mut d = Daemon {
            child: None,
            config,
            starttls: "127.0.0.1:0".parse().expect("addr"),
            direct_tls: "127.0.0.1:0".parse().expect("addr"),
            domain: o.domain.clone(),
            stderr,
            dir,
            pg,
        };
        for (u, p) in &o.accounts {
            d.add_account(u, p);
        }
        d.spawn();
        d
    }

    /// (Re)start the process on the same configuration and data.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .expect("log file");
        let mut cmd = Command::new(xmppd_bin());
        cmd.arg("--config")
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(log)
            .stdin(Stdio::null());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().expect("spawn xmppd");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l == "ready" => break,
                Ok(l) => {
                    let parts: Vec<&str> = l.split_whitespace().collect();
                    if let ["listening", kind, addr] = parts.as_slice() {
                        let a: SocketAddr = addr.parse().expect("address");
                        if *kind == "starttls" {
                            self.starttls = a;
                        } else {
                            self.direct_tls = a;
                        }
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("xmppd did not start:\n{}", self.log());
                }
            }
        }
        self.child = Some(child);
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(xmppd_bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run xmppd cli")
    }

    pub fn add_account(&self, user: &str, password: &str) {
        let jid = format!("{user}@{}", self.domain);
        let out = self.cli(&["account", "add", &jid, "--password", password]);
        assert!(
            out.status.success(),
            "account add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait until the daemon's log contains `needle` (at least `count` times).
    pub fn wait_log(&self, needle: &str, count: usize) {
        for _ in 0..200 {
            if self.log().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("log never showed {needle:?}:\n{}", self.log());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        for _ in 0..200 {
            if let Ok(Some(st)) = child.try_wait() {
                return st;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("xmppd did not exit after SIGTERM:\n{}", self.log());
    }

    /// SIGKILL (a crash) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    pub fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain)
    }

    /// Run SQL statements on the daemon's database behind its back (fault tests), on
    /// whichever backend it uses.
    pub fn sql(&self, statements: &str) {
        match &self.pg {
            Some(pg) => {
                // the synchronous client runs its own runtime: not on a test's runtime thread
                let (url, sql) = (pg.url("xmppd"), statements.to_string());
                std::thread::spawn(move || {
                    let mut c = ::postgres::Client::connect(&url, ::postgres::NoTls)
                        .expect("connect to postgres");
                    c.batch_execute(&sql).expect("sql");
                })
                .join()
                .expect("sql thread");
            }
            None => {
                let c =
                    rusqlite::Connection::open(self.dir.path().join("data").join("xmppd.sqlite"))
                        .expect("open db");
                c.busy_timeout(Duration::from_secs(5)).expect("timeout");
                c.execute_batch(statements).expect("sql");
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- xmppd log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.kill9();
    }
}

// ---------------------------------------------------------------- raw client --

pub fn client_tls_config() -> Arc<rustls::ClientConfig> {
    client_tls_config_with(rustls::DEFAULT_VERSIONS)
}

/// A client configuration trusting the test CA, offering only `versions`.
pub fn client_tls_config_with(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki().ca).expect("ca") {
        roots.add(c.expect("cert")).expect("add");
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(cfg)
}

enum RawStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Gone,
}

/// A client speaking raw XML, for tests where protocol details matter.
pub struct Raw {
    s: RawStream,
    buf: Vec<u8>,
    /// Stanzas read ahead (while waiting for another one), returned first.
    stash: std::collections::VecDeque<String>,
    pub domain: String,
    /// Channel binding (tls-exporter) of the current TLS session.
    pub exporter: Option<Vec<u8>>,
    /// Channel binding (tls-server-end-point) of the current TLS session.
    pub endpoint: Option<Vec<u8>>,
    /// The TLS versions offered on upgrade.
    pub tls_versions: &'static [&'static rustls::SupportedProtocolVersion],
    /// A client configuration to upgrade with instead (its own trust, versions and
    /// session cache).
    pub tls_config: Option<Arc<rustls::ClientConfig>>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr, domain: &str) -> Raw {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        Raw {
            s: RawStream::Plain(tcp),
            buf: Vec::new(),
            stash: Default::default(),
            domain: domain.to_string(),
            exporter: None,
            endpoint: None,
            tls_versions: rustls::DEFAULT_VERSIONS,
            tls_config: None,
        }
    }

    /// Connect to a direct-TLS listener.
    pub async fn connect_tls(addr: SocketAddr, domain: &str) -> Raw {
        let mut r = Raw::connect(addr, domain).await;
        r.upgrade().await;
        r
    }

    /// The negotiated TLS version.
    pub fn tls_version(&self) -> Option<rustls::ProtocolVersion> {
        match &self.s {
            RawStream::Tls(s) => s.get_ref().1.protocol_version(),
            _ => None,
        }
    }

    pub async fn send(&mut self, data: &str) {
        let r = match &mut self.s {
            RawStream::Plain(s) => s.write_all(data.as_bytes()).await,
            RawStream::Tls(s) => {
                let r = s.write_all(data.as_bytes()).await;
                if r.is_ok() { s.flush().await } else { r }
            }
            RawStream::Gone => Ok(()),
        };
        r.expect("send");
    }

    /// Send, ignoring errors (the server may already have closed).
    pub async fn try_send(&mut self, data: &[u8]) -> bool {
        match &mut self.s {
            RawStream::Plain(s) => s.write_all(data).await.is_ok(),
            RawStream::Tls(s) => s.write_all(data).await.is_ok() && s.flush().await.is_ok(),
            RawStream::Gone => false,
        }
    }

    /// Send a TLS 1.3 KeyUpdate (rustls sets update_requested: the server must answer
    /// with its own and switch its key too).
    pub async fn key_update(&mut self) {
        let RawStream::Tls(s) = &mut self.s else {
            panic!("not TLS")
        };
        s.get_mut().1.refresh_traffic_keys().expect("key update");
        s.flush().await.expect("flush");
    }

    /// Write `bytes` on the TCP socket under TLS, as they are (a forged record).
    pub async fn send_raw_record(&mut self, bytes: &[u8]) {
        let RawStream::Tls(s) = &mut self.s else {
            panic!("not TLS")
        };
        s.get_mut().0.write_all(bytes).await.expect("send");
    }

    /// Send `data` and a close_notify in one write.
    pub async fn send_then_close_notify(&mut self, data: &str) {
        use std::io::Write;
        let RawStream::Tls(s) = &mut self.s else {
            panic!("not TLS")
        };
        let conn = s.get_mut().1;
        conn.writer().write_all(data.as_bytes()).expect("write");
        conn.send_close_notify();
        s.flush().await.expect("flush");
    }

    /// Read until the connection ends: what came, and how it ended (`Ok`: with the
    /// server's close_notify; `Err`: the TLS error, such as the alert received).
    pub async fn read_to_end_tls(&mut self) -> (String, Result<(), String>) {
        let RawStream::Tls(s) = &mut self.s else {
            panic!("not TLS")
        };
        let mut b = [0u8; 8192];
        let end = tokio::time::timeout(TIMEOUT, async {
            loop {
                match s.read(&mut b).await {
                    Ok(0) => return Ok(()),
                    Ok(n) => self.buf.extend_from_slice(&b[..n]),
                    Err(e) => return Err(format!("{e:?}")),
                }
            }
        })
        .await
        .expect("the server did not close");
        let out = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        (out, end)
    }

    async fn fill(&mut self) -> usize {
        let mut b = [0u8; 8192];
        let n = match &mut self.s {
            RawStream::Plain(s) => s.read(&mut b).await.unwrap_or(0),
            RawStream::Tls(s) => s.read(&mut b).await.unwrap_or(0),
            RawStream::Gone => 0,
        };
        self.buf.extend_from_slice(&b[..n]);
        n
    }

    /// Read until `needle` appears; returns everything up to and including it.
    pub async fn read_until(&mut self, needle: &str) -> String {
        match self.try_read_until(needle, TIMEOUT).await {
            Some(s) => s,
            None => panic!(
                "timed out waiting for {needle:?}; got {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    pub async fn try_read_until(&mut self, needle: &str, t: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + t;
        loop {
            if let Some(i) = find(&self.buf, needle.as_bytes()) {
                let end = i + needle.len();
                let out: Vec<u8> = self.buf.drain(..end).collect();
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Read everything until the server closes the connection.
    pub async fn read_to_close(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => panic!(
                    "server did not close; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        }
        let out = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        out
    }

    /// Read one complete top-level element (a stanza) as text.
    pub async fn next_stanza(&mut self) -> String {
        if let Some(s) = self.stash.pop_front() {
            return s;
        }
        self.read_stanza().await
    }

    /// A stanza read past on the way to another (kept for later) contains `needle`.
    pub fn stash_has(&self, needle: &str) -> bool {
        self.stash.iter().any(|s| s.contains(needle))
    }

    /// The next stanza containing `needle`; others met on the way are kept for later.
    pub async fn wait_for(&mut self, needle: &str) -> String {
        if let Some(i) = self.stash.iter().position(|s| s.contains(needle)) {
            return self.stash.remove(i).unwrap_or_default();
        }
        loop {
            let s = self.read_stanza().await;
            if s.contains(needle) {
                return s;
            }
            self.stash.push_back(s);
        }
    }

    /// The next stanza that is not presence (presence met on the way is dropped).
    pub async fn next_non_presence(&mut self) -> String {
        loop {
            let s = self.next_stanza().await;
            if !s.starts_with("<presence") {
                return s;
            }
        }
    }

    async fn read_stanza(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            if let Some(end) = complete_element(&self.buf) {
                let out: Vec<u8> = self.buf.drain(..end).collect();
                return String::from_utf8_lossy(&out).trim().to_string();
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(0) | Err(_) => panic!(
                    "no complete stanza; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Ok(_) => {}
            }
        }
    }

    /// Expect nothing but presence to arrive within `t`.
    pub async fn expect_only_presence(&mut self, t: Duration) {
        self.stash.retain(|s| !s.starts_with("<presence"));
        let deadline = tokio::time::Instant::now() + t;
        while let Ok(s) = tokio::time::timeout_at(deadline, self.read_stanza()).await {
            assert!(s.starts_with("<presence"), "unexpected stanza: {s}");
        }
        assert!(
            self.stash.is_empty(),
            "unexpected stanzas: {:?}",
            self.stash
        );
    }

    /// Expect nothing more to arrive within `t`.
    pub async fn expect_silence(&mut self, t: Duration) {
        assert!(
            self.stash.is_empty(),
            "unexpected stanzas: {:?}",
            self.stash
        );
        let _ = tokio::time::timeout(t, self.fill()).await;
        assert!(
            self.buf.iter().all(|b| b.is_ascii_whitespace()),
            "unexpected data: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }

    pub fn header(&self) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0'>",
            self.domain
        )
    }

    /// Open a stream and return the features.
    pub async fn open(&mut self) -> String {
        let h = self.header();
        self.send(&h).await;
        self.read_until("</stream:features>").await
    }

    async fn upgrade(&mut self) {
        let RawStream::Plain(tcp) = std::mem::replace(&mut self.s, RawStream::Gone) else {
            panic!("already TLS")
        };
        let name = rustls::pki_types::ServerName::try_from(self.domain.clone()).expect("name");
        let tls = tokio::time::timeout(
            TIMEOUT,
            tokio_rustls::TlsConnector::from(
                self.tls_config
                    .clone()
                    .unwrap_or_else(|| client_tls_config_with(self.tls_versions)),
            )
            .connect(name, tcp),
        )
        .await
        .expect("tls timeout")
        .expect("tls handshake");
        let conn = tls.get_ref().1;
        self.exporter = (conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then(|| {
                conn.export_keying_material(vec![0u8; 32], b"EXPORTER-Channel-Binding", None)
                    .ok()
            })
            .flatten();
        // RFC 5929 tls-server-end-point: SHA-256 of the server's certificate (ECDSA
        // P-256 with SHA-256 here)
        self.endpoint = conn.peer_certificates().and_then(|c| c.first()).map(|c| {
            use sha2::Digest;
            sha2::Sha256::digest(c.as_ref()).to_vec()
        });
        self.s = RawStream::Tls(Box::new(tls));
        self.buf.clear();
    }

    /// Open a stream, STARTTLS, and open the stream again; returns the new features.
    pub async fn starttls(&mut self) -> String {
        let f = self.open().await;
        assert!(
            f.contains("urn:ietf:params:xml:ns:xmpp-tls"),
            "no starttls offered: {f}"
        );
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        self.read_until("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        self.upgrade().await;
        self.open().await
    }

    /// SASL PLAIN; returns the server's answer element.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> String {
        use base64::Engine;
        let ir = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{ir}</auth>"
        ))
        .await;
        self.next_stanza().await
    }

    /// Run a SCRAM exchange with rsasl's client; returns the final server element.
    pub async fn auth_scram(&mut self, mech: &str, user: &str, password: &str) -> String {
        let cb = ClientCb {
            name: "tls-exporter",
            data: self.exporter.clone().unwrap_or_default(),
        };
        self.auth_scram_with(mech, user, password, cb).await
    }

    /// SCRAM with a chosen channel binding (for the -PLUS mechanisms).
    pub async fn auth_scram_with(
        &mut self,
        mech: &str,
        user: &str,
        password: &str,
        cb: ClientCb,
    ) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut client = scram_client(mech, user, password, cb);
        let mut out = std::io::Cursor::new(Vec::new());
        client.step(None, &mut out).expect("client first");
        let first = b64.encode(out.into_inner());
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mech}'>{first}</auth>"
        ))
        .await;
        loop {
            let el = self.next_stanza().await;
            if !el.starts_with("<challenge") {
                if el.starts_with("<success") {
                    // verify the server's signature
                    let data = b64.decode(inner_text(&el)).expect("b64");
                    let mut sink = std::io::Cursor::new(Vec::new());
                    client
                        .step(Some(&data), &mut sink)
                        .expect("server signature verifies");
                }
                return el;
            }
            let data = b64.decode(inner_text(&el)).expect("b64");
            let mut resp = std::io::Cursor::new(Vec::new());
            client.step(Some(&data), &mut resp).expect("client step");
            let resp = b64.encode(resp.into_inner());
            self.send(&format!(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{resp}</response>"
            ))
            .await;
        }
    }

    /// After SASL success: restart the stream and bind; returns the bound JID.
    pub async fn bind(&mut self, resource: Option<&str>) -> String {
        let f = self.open().await;
        assert!(
            f.contains("urn:ietf:params:xml:ns:xmpp-bind"),
            "no bind offered: {f}"
        );
        let res = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send(&format!("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{res}</bind></iq>")).await;
        let r = self.next_stanza().await;
        assert!(r.contains("type='result'"), "bind failed: {r}");
        let start = r.find("<jid>").expect("jid") + 5;
        let end = r.find("</jid>").expect("jid end");
        r[start..end].to_string()
    }

    /// STARTTLS + SCRAM-SHA-256 + bind, without initial presence.
    pub async fn bound(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
        resource: &str,
    ) -> (Raw, String) {
        let mut r = Raw::connect(addr, domain).await;
        r.starttls().await;
        let ok = r.auth_scram("SCRAM-SHA-256", user, password).await;
        assert!(ok.starts_with("<success"), "login failed: {ok}");
        let jid = r.bind(Some(resource)).await;
        (r, jid)
    }

    /// STARTTLS + SCRAM-SHA-256 + bind + initial presence.
    pub async fn login(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
        resource: &str,
    ) -> (Raw, String) {
        let (mut r, jid) = Raw::bound(addr, domain, user, password, resource).await;
        r.send("<presence/>").await;
        // the server echoes initial presence to the resource (RFC 6121 §4.2.2); by then
        // the registry has seen it too (it was told first)
        r.wait_for(&format!("from='{jid}' to='{jid}'")).await;
        (r, jid)
    }
}

/// `a` (the account `a_user@localhost`) and `b` (`b_user@localhost`), both online, fetch
/// their rosters (so they get pushes) and become contacts both ways; returns once `b`
/// sees `subscription='both'`.
pub async fn mutual_contacts(a: &mut Raw, a_user: &str, b: &mut Raw, b_user: &str) {
    for r in [&mut *a, &mut *b] {
        r.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        r.wait_for("id='roster'").await;
    }
    for (r, peer, id) in [(&mut *a, b_user, "ra"), (&mut *b, a_user, "rb")] {
        r.send(&format!(
            "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='{peer}@localhost'/></query></iq>"
        ))
        .await;
        r.wait_for(&format!("id='{id}'")).await;
        r.send(&format!(
            "<presence to='{peer}@localhost' type='subscribe'/>"
        ))
        .await;
    }
    for (r, peer) in [(&mut *b, a_user), (&mut *a, b_user)] {
        r.wait_for("type='subscribe'").await;
        r.send(&format!(
            "<presence to='{peer}@localhost' type='subscribed'/>"
        ))
        .await;
    }
    b.wait_for("subscription='both'").await;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Text content of a simple element `<x ...>TEXT</x>`.
pub fn inner_text(el: &str) -> &str {
    if el.ends_with("/>") {
        return "";
    }
    let start = el.find('>').map(|i| i + 1).unwrap_or(0);
    let end = el.rfind("</").unwrap_or(el.len());
    el.get(start..end).unwrap_or("")
}

/// End offset of the first complete top-level element in `buf` (skipping leading
/// whitespace, XML declarations and a stream header).
fn complete_element(buf: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(buf)
        .ok()
        .or_else(|| std::str::from_utf8(&buf[..buf.len().saturating_sub(3)]).ok())?;
    let mut i = 0;
    let bytes = s.as_bytes();
    // skip whitespace
    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
        i += 1;
    }
    if i >= bytes.len() || bytes[i] != b'<' {
        return None;
    }
    let mut depth = 0i32;
    let mut j = i;
    while j < bytes.len() {
        if bytes[j] == b'<' {
            let close = s[j..].find('>')? + j;
            let tag = &s[j..=close];
            if tag.starts_with("<?") {
                // declaration: skip
            } else if tag.starts_with("</") {
                depth -= 1;
                if depth == 0 {
                    return Some(close + 1);
                }
            } else if tag.ends_with("/>") {
                if depth == 0 {
                    return Some(close + 1);
                }
            } else if tag.starts_with("<stream:stream") {
                // a stream header is not an element of its own here
                if depth == 0 {
                    return Some(close + 1);
                }
            } else {
                depth += 1;
            }
            j = close + 1;
        } else {
            j += 1;
        }
    }
    None
}

pub fn scram_client(
    mech: &str,
    user: &str,
    password: &str,
    cb: ClientCb,
) -> rsasl::prelude::Session<rsasl::validate::NoValidation, ClientCb> {
    use rsasl::callback::{Context, Request, SessionCallback, SessionData};
    use rsasl::mechanisms::scram::*;
    use rsasl::prelude::*;
    use rsasl::property::OverrideCBType;
    use rsasl::property::{AuthId, Password};
    /// user, password, channel-binding type, whether the mechanism binds the channel
    struct C(String, String, &'static str, bool);
    impl SessionCallback for C {
        // like a real client (RFC 5802 §6): one that picks a mechanism without -PLUS
        // while the server offers -PLUS does not claim channel-binding support ('n');
        // claiming it ('y') would mean someone stripped -PLUS from the features
        fn enable_channel_binding(&self) -> bool {
            self.3
        }
        fn callback(
            &self,
            _: &SessionData,
            _: &Context,
            req: &mut Request,
        ) -> Result<(), SessionError> {
            req.satisfy::<AuthId>(&self.0)?;
            req.satisfy::<Password>(self.1.as_bytes())?;
            if req.is::<OverrideCBType>() {
                req.satisfy::<OverrideCBType>(self.2)?;
            }
            Ok(())
        }
    }
    static M: &[Mechanism] = &[SCRAM_SHA256_PLUS, SCRAM_SHA1_PLUS, SCRAM_SHA256, SCRAM_SHA1];
    let cfg = SASLConfig::builder()
        .with_registry(Registry::with_mechanisms(M))
        .with_callback(C(
            user.into(),
            password.into(),
            cb.name,
            mech.ends_with("-PLUS"),
        ))
        .expect("cfg");
    let name = Mechname::parse(mech.as_bytes()).expect("mech");
    SASLClient::with_cb(cfg, cb)
        .start_suggested(&[name])
        .expect("start")
}

/// The channel binding a test client uses: its type and data.
pub struct ClientCb {
    pub name: &'static str,
    pub data: Vec<u8>,
}
impl rsasl::prelude::ChannelBindingCallback for ClientCb {
    fn get_cb_data(&self, name: &str) -> Option<&[u8]> {
        (name == self.name && !self.data.is_empty()).then_some(&self.data[..])
    }
}

/// Run a Python client script from tests/clients with a timeout; returns its stdout.
pub fn python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("clients")
        .join(script);
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg("python3")
        .arg(&path)
        .args(args)
        .env("SSL_CERT_FILE", &pki().ca);
    let out = cmd.output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

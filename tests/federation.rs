//! Federation with Prosody (Debian's, a server nobody here wrote) on loopback: chat,
//! presence subscription and iq both ways through dialback; a forged dialback key and
//! a stanza from an unverified domain refused; signals for an unreachable peer bounced.
//!
//! Prosody runs in the foreground as a child of the test (killed when the test ends or
//! dies), on its own 127.0.x.y address with ephemeral ports and a temporary config and
//! data directory. It finds xmppd through a tiny DNS server the test runs on loopback
//! (Prosody's libunbound forwards to it): SRV `_xmpp-server._tcp` for xmppd's domain
//! names xmppd's ephemeral port. xmppd reaches Prosody through a router record.

mod common;
mod federation_common;
use common::*;
use federation_common::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const XMPPD_DOMAIN: &str = "xmppd.example";
const PROSODY_DOMAIN: &str = "prosody.example";

/// A loopback address of this test process's own, so parallel runs do not meet.
fn own_address(n: u8) -> Ipv4Addr {
    let pid = std::process::id();
    Ipv4Addr::new(127, 10 + (pid % 200) as u8, (pid / 200 % 250) as u8 + 1, n)
}

struct Prosody {
    child: Child,
    dir: tempfile::TempDir,
    ip: Ipv4Addr,
    c2s: u16,
}

impl Prosody {
    fn start(ip: Ipv4Addr, (c2s, s2s): (u16, u16), dns: SocketAddr) -> Prosody {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).expect("data dir");
        let cert =
            rcgen::generate_simple_self_signed(vec![PROSODY_DOMAIN.to_string()]).expect("cert");
        std::fs::write(d.join("cert.pem"), cert.cert.pem()).expect("cert");
        std::fs::write(d.join("key.pem"), cert.signing_key.serialize_pem()).expect("key");
        let cfg = format!(
            r#"run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{d}/prosody.log" }} }}
interfaces = {{ "{ip}" }}
local_interfaces = {{ "{ip}" }}
c2s_ports = {{ {c2s} }}
s2s_ports = {{ {s2s} }}
c2s_direct_tls_ports = {{ }}
s2s_direct_tls_ports = {{ }}
http_ports = {{ }}
https_ports = {{ }}
component_ports = {{ }}
unbound = {{ hoststxt = false; resolvconf = false; forward = {{ "{dns_ip}@{dns_port}" }} }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "dialback"; "disco"; "version"; "ping"; "presence"; "message" }}
modules_disabled = {{ "posix" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
s2s_require_encryption = false
s2s_secure_auth = false
VirtualHost "{PROSODY_DOMAIN}"
  ssl = {{ certificate = "{d}/cert.pem"; key = "{d}/key.pem" }}
"#,
            d = d.display(),
            dns_ip = dns.ip(),
            dns_port = dns.port(),
        );
        let cfg_path = d.join("prosody.cfg.lua");
        std::fs::write(&cfg_path, cfg).expect("config");
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(&cfg_path)
            .args(["register", "bob", PROSODY_DOMAIN, "pw"])
            .output()
            .expect("prosodyctl");
        assert!(out.status.success(), "prosodyctl register: {out:?}");
        let mut cmd = Command::new("prosody");
        cmd.arg("--config")
            .arg(&cfg_path)
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("spawn prosody");
        let p = Prosody {
            child,
            dir,
            ip,
            c2s,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect((ip, c2s)).is_ok() {
                return p;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prosody did not start:\n{}", p.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_prosody() -> bool {
    Command::new("prosodyctl")
        .arg("about")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// xmppd for XMPPD_DOMAIN with a router record to Prosody, and the DNS Prosody uses to
/// find it (started once xmppd's port is known).
/// Prosody's ports are picked first (xmppd's router record names them), then xmppd
/// starts, then the DNS server with xmppd's port, then Prosody.
fn federated_pair(extra: &str) -> (Daemon, Prosody, FakeDns) {
    let ip = own_address(2);
    let ports = (free_port(ip), free_port(ip));
    let d = Daemon::with(Options {
        domain: XMPPD_DOMAIN.into(),
        extra: format!(
            "[[routes]]\ndomain = \"{PROSODY_DOMAIN}\"\nhost = \"{ip}\"\nport = {}\n\n{extra}",
            ports.1
        ),
        ..Options::default()
    });
    let dns = FakeDns::start(vec![(
        XMPPD_DOMAIN.to_string(),
        Ipv4Addr::LOCALHOST,
        d.starttls.port(),
    )]);
    let p = Prosody::start(ip, ports, dns.addr);
    (d, p, dns)
}

/// Run the slixmpp scenario between alice@xmppd and bob@peer; its output.
fn run_scenario(
    d: &Daemon,
    ip: Ipv4Addr,
    c2s: u16,
    domain: &str,
    peer_log: &dyn Fn() -> String,
) -> String {
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/fed.py"))
        .args([
            "both",
            &d.starttls.port().to_string(),
            XMPPD_DOMAIN,
            &ip.to_string(),
            &c2s.to_string(),
            domain,
        ])
        .env("SSL_CERT_FILE", &pki().ca)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fed.py failed:\n{stdout}\n{}\n--- xmppd\n{}\n--- peer\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log(),
        peer_log()
    );
    stdout
}

/// What a user on each side observed: chat both ways, mutual subscription, presence
/// both ways, each server answering the other side's user.
fn assert_federated(stdout: &str, domain: &str, software: &str) {
    for want in [
        format!("bob got chat from alice@{XMPPD_DOMAIN}/slix: hello from xmppd"),
        format!("alice got chat from bob@{domain}/slix: hello from the peer"),
        "alice sees bob as both; bob sees alice as both".to_string(),
        "presence seen both ways".to_string(),
        format!("bob asked {XMPPD_DOMAIN}: xmppd"),
        format!("alice asked {domain}: {software}"),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in:\n{stdout}");
    }
}

#[test]
fn chat_subscription_presence_and_iq_with_prosody() {
    if !have_prosody() {
        panic!("prosody is not installed (scripts/test installs it)");
    }
    let (d, p, _dns) = federated_pair("");
    let stdout = run_scenario(&d, p.ip, p.c2s, PROSODY_DOMAIN, &|| p.log());
    assert_federated(&stdout, PROSODY_DOMAIN, "Prosody");
}

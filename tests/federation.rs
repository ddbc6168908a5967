//! Federation with Prosody 0.12 and ejabberd 23.01 (Debian's; servers nobody here
//! wrote) on loopback: chat, presence subscription, presence and iq to the other server,
//! both ways, through STARTTLS and dialback.
//!
//! Prosody runs in the foreground as a child of the test (killed when the test ends or
//! dies), on its own 127.0.x.y address with ephemeral ports and a temporary config and
//! data directory. It finds xmppd through a tiny DNS server the test runs on loopback
//! (Prosody's libunbound forwards to it): SRV `_xmpp-server._tcp` for xmppd's domain
//! names xmppd's ephemeral port. xmppd reaches Prosody through a router record.
//! ejabberd runs the same way (its own node name and distribution port, its inetrc
//! naming the test's DNS server; it resolves SRV targets with getaddrinfo, so the SRV
//! answer names the address itself).

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
    let dns = FakeDns::start(vec![]);
    let d = Daemon::with(Options {
        domain: XMPPD_DOMAIN.into(),
        extra: format!(
            "[[routes]]\ndomain = \"{PROSODY_DOMAIN}\"\nhost = \"{ip}\"\nport = {}\n\n\
             [s2s]\n{}{extra}",
            ports.1,
            dns.config()
        ),
        ..Options::default()
    });
    dns.add(XMPPD_DOMAIN, Ipv4Addr::LOCALHOST, d.starttls.port());
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

const EJABBERD_DOMAIN: &str = "ejabberd.example";

/// ejabberd (Debian's 23.01) in the foreground as the `ejabberd` user, its own node
/// name, Erlang distribution port (no epmd), config, spool and logs in a temporary
/// directory; DNS only through the test's server (its own inetrc). The whole process
/// group is killed at the end.
struct Ejabberd {
    child: Child,
    dir: tempfile::TempDir,
    ip: Ipv4Addr,
    c2s: u16,
}

impl Ejabberd {
    fn ctl(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=ejabberd",
            "--regid=ejabberd",
            "--init-groups",
            "ejabberdctl",
            "--config-dir",
        ])
        .arg(d.join("etc"))
        .arg("--config")
        .arg(d.join("etc/ejabberd.yml"))
        .arg("--ctl-config")
        .arg(d.join("etc/ejabberdctl.cfg"))
        .arg("--logs")
        .arg(d.join("logs"))
        .arg("--spool")
        .arg(d.join("spool"))
        .env("HOME", d)
        .current_dir(d);
        cmd
    }

    fn start(ip: Ipv4Addr, (c2s, s2s): (u16, u16), dns: SocketAddr) -> Ejabberd {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        for sub in ["etc", "spool", "logs"] {
            std::fs::create_dir_all(d.join(sub)).expect("dir");
        }
        // rcgen's default validity (to the year 4096) overflows ejabberd's expiry timer
        let made = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "30", "-subj"])
            .arg(format!("/CN={EJABBERD_DOMAIN}"))
            .arg("-keyout")
            .arg(d.join("etc/key.pem"))
            .arg("-out")
            .arg(d.join("etc/crt.pem"))
            .output()
            .expect("openssl");
        assert!(made.status.success(), "openssl: {made:?}");
        let pem = [
            std::fs::read_to_string(d.join("etc/crt.pem")).expect("crt"),
            std::fs::read_to_string(d.join("etc/key.pem")).expect("key"),
        ]
        .concat();
        std::fs::write(d.join("etc/cert.pem"), pem).expect("cert");
        let dist = free_port(Ipv4Addr::LOCALHOST);
        let node = format!("ejabberd_fed_{}@localhost", std::process::id());
        let dns_ip = dns.ip().to_string().replace('.', ",");
        std::fs::write(
            d.join("etc/inetrc"),
            format!(
                "{{resolv_conf, \"\"}}.\n{{hosts_file, \"\"}}.\n\
                 {{host, {{127,0,0,1}}, [\"localhost\"]}}.\n\
                 {{nameserver, {{{dns_ip}}}, {}}}.\n{{lookup, [file, dns]}}.\n\
                 {{timeout, 1000}}.\n{{retry, 1}}.\n",
                dns.port()
            ),
        )
        .expect("inetrc");
        std::fs::write(
            d.join("etc/ejabberdctl.cfg"),
            format!(
                "ERLANG_NODE={node}\nINET_DIST_INTERFACE=127.0.0.1\nERL_DIST_PORT={dist}\n\
                 ERL_EPMD_ADDRESS=127.0.0.1\nEJABBERD_PID_PATH={}/ejabberd.pid\n\
                 EJABBERD_BYPASS_WARNINGS=true\n",
                d.display()
            ),
        )
        .expect("ctl cfg");
        std::fs::write(
            d.join("etc/ejabberd.yml"),
            format!(
                r#"hosts:
  - "{EJABBERD_DOMAIN}"
loglevel: debug
log_rotate_count: 0
certfiles:
  - "{d}/etc/cert.pem"
acme:
  auto: false
listen:
  -
    port: {c2s}
    ip: "{ip}"
    module: ejabberd_c2s
    starttls: true
  -
    port: {s2s}
    ip: "{ip}"
    module: ejabberd_s2s_in
s2s_use_starttls: optional
s2s_access: all
s2s_dns_timeout: 3
s2s_dns_retries: 1
auth_method: internal
auth_password_format: scram
access_rules:
  c2s:
    allow: all
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_version:
    show_os: false
"#,
                d = d.display()
            ),
        )
        .expect("config");
        let chown = Command::new("chown")
            .args(["-R", "ejabberd:ejabberd"])
            .arg(&d)
            .status()
            .expect("chown");
        assert!(chown.success());
        let mut perms = std::fs::metadata(&d).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&d, perms).expect("chmod");
        let mut e = Ejabberd {
            child: Command::new("true").spawn().expect("placeholder"),
            dir,
            ip,
            c2s,
        };
        let mut cmd = e.ctl();
        cmd.arg("foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let _ = e.child.wait();
        e.child = cmd.spawn().expect("spawn ejabberd");
        for _ in 0..300 {
            if std::net::TcpStream::connect((ip, c2s)).is_ok() {
                let _ = e.ctl().arg("started").output();
                let out = e
                    .ctl()
                    .args(["register", "bob", EJABBERD_DOMAIN, "pw"])
                    .output()
                    .expect("ejabberdctl register");
                assert!(out.status.success(), "register: {out:?}\n{}", e.log());
                return e;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("ejabberd did not start:\n{}", e.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("logs/ejabberd.log")).unwrap_or_default()
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // the shell, erl and its helpers: the whole process group
        let pgid = self.child.id() as i32;
        // SAFETY: signals a process group this test created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[test]
fn chat_subscription_presence_and_iq_with_ejabberd() {
    let ip = own_address(3);
    let ports = (free_port(ip), free_port(ip));
    let dns = FakeDns::with_address_targets(vec![]);
    let d = Daemon::with(Options {
        domain: XMPPD_DOMAIN.into(),
        extra: format!(
            "[[routes]]\ndomain = \"{EJABBERD_DOMAIN}\"\nhost = \"{ip}\"\nport = {}\n\n\
             [s2s]\n{}",
            ports.1,
            dns.config()
        ),
        ..Options::default()
    });
    dns.add(XMPPD_DOMAIN, Ipv4Addr::LOCALHOST, d.starttls.port());
    let e = Ejabberd::start(ip, ports, dns.addr);
    let stdout = run_scenario(&d, e.ip, e.c2s, EJABBERD_DOMAIN, &|| e.log());
    assert_federated(&stdout, EJABBERD_DOMAIN, "ejabberd");
}

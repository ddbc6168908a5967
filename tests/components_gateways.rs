//! Real components attached to the real daemon (XEP-0114): slixmpp's `ComponentXMPP`
//! with a slixmpp client, and the biboumi IRC gateway (Debian) in front of an ngircd
//! IRC server (Debian), with an XMPP user (slixmpp) and an IRC user (raw socket).

mod common;
use common::*;
use std::time::Duration;

fn daemon() -> Daemon {
    Daemon::with(Options {
        extra: "[[components]]\nname = \"irc.localhost\"\nsecret = \"s3cret-irc\"\n".into(),
        ..Options::default()
    })
}

/// slixmpp's `ComponentXMPP` as the component, a slixmpp client as the user.
#[test]
fn slixmpp_component_and_client() {
    let d = daemon();
    let out = python(
        "component.py",
        &[
            &d.starttls.port().to_string(),
            "localhost",
            "irc.localhost",
            "s3cret-irc",
        ],
    );
    let expect = [
        "component irc.localhost connected",
        "component got chat from alice@localhost/slix to echo@irc.localhost: hello component",
        "alice got chat from echo@irc.localhost: echo: hello component",
        "alice sees identities [('gateway', 'echo', 'Echo')]",
        "server items ['conference.localhost', 'irc.localhost']",
        "component got subscribe from alice@localhost to echo@irc.localhost",
        "alice sees echo@irc.localhost/echo available show=chat",
        "alice's roster has echo@irc.localhost as to",
        "after disconnect alice got error service-unavailable",
    ];
    for e in expect {
        assert!(out.contains(e), "missing {e:?} in:\n{out}");
    }
}

/// A child process killed (and reaped) when dropped, and killed with the test process.
struct Proc(Option<std::process::Child>);

impl Proc {
    fn spawn(cmd: &mut std::process::Command) -> Proc {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches nothing else.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Proc(Some(cmd.spawn().expect("spawn")))
    }

    /// Wait for it to exit (killed after `limit`), then collect its piped output.
    fn output(mut self, limit: Duration) -> (std::process::ExitStatus, String, String) {
        use std::io::Read;
        let mut child = self.0.take().expect("running");
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().expect("wait") {
                break st;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, out, err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn installed(bin: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(bin).exists())
}

/// An IRC client on a raw socket: registers `nick`, joins `#chan`, then reports each
/// line it reads (answering PING) until told to quit.
struct Irc {
    w: std::net::TcpStream,
    r: std::io::BufReader<std::net::TcpStream>,
}

impl Irc {
    fn connect(addr: std::net::SocketAddr, nick: &str) -> Irc {
        let mut tries = 0;
        let s = loop {
            match std::net::TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("IRC server at {addr}: {e}"),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut irc = Irc {
            r: std::io::BufReader::new(s.try_clone().expect("clone")),
            w: s,
        };
        irc.send(&format!("NICK {nick}"));
        irc.send(&format!("USER {nick} 0 * :{nick}"));
        irc.until(" 001 ");
        irc
    }

    fn send(&mut self, line: &str) {
        use std::io::Write;
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("IRC write");
    }

    /// Read lines until one contains `needle`; returns it.
    fn until(&mut self, needle: &str) -> String {
        use std::io::BufRead;
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) => panic!("IRC server closed while waiting for {needle:?}"),
                Ok(_) => {}
                Err(e) => panic!("IRC: waiting for {needle:?}: {e}"),
            }
            if let Some(rest) = line.strip_prefix("PING ") {
                self.send(&format!("PONG {}", rest.trim()));
                continue;
            }
            if line.contains(needle) {
                return line.trim().to_string();
            }
        }
    }
}

/// The real gateway: biboumi (Debian's XMPP-IRC gateway) attached to xmppd as a
/// component, ngircd (Debian's IRC server) behind it, each on its own loopback
/// address; an XMPP user (slixmpp) in an IRC channel with an IRC user (raw socket).
#[test]
fn biboumi_gateway_with_ngircd() {
    if !installed("biboumi") || !installed("ngircd") {
        // a missing gateway fails the test: it must not pass without running
        assert!(
            std::env::var_os("XMPPD_TEST_NO_GATEWAY").is_some_and(|v| v == "1"),
            "biboumi or ngircd is not installed (apt-get install biboumi ngircd; \
             scripts/test installs them); set XMPPD_TEST_NO_GATEWAY=1 to skip this test"
        );
        eprintln!("SKIPPED (XMPPD_TEST_NO_GATEWAY=1): biboumi or ngircd is not installed");
        return;
    }
    // the IRC server on an address of its own (biboumi finds plain IRC on port 6667)
    let pid = std::process::id();
    let irc_ip = format!(
        "127.{}.{}.{}",
        64 + (pid >> 16) % 64,
        (pid >> 8) & 255,
        (pid & 255).max(1)
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let ngircd_conf = tmp.path().join("ngircd.conf");
    std::fs::write(
        &ngircd_conf,
        format!(
            "[Global]\nName = irc.test\nInfo = xmppd test\nListen = {irc_ip}\nPorts = 6667\n\
             MotdPhrase = test\nAdminInfo1 = test\nAdminEMail = test@irc.test\n\
             [Options]\nPAM = no\nIdent = no\nDNS = no\n"
        ),
    )
    .expect("write");
    let _ngircd = Proc::spawn(
        std::process::Command::new("ngircd")
            .arg("-n")
            .arg("-f")
            .arg(&ngircd_conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let irc_addr: std::net::SocketAddr = format!("{irc_ip}:6667").parse().expect("addr");

    let d = Daemon::with(Options {
        extra: "[[components]]\nname = \"biboumi.localhost\"\nsecret = \"bibi-secret\"\n".into(),
        ..Options::default()
    });
    let biboumi_conf = tmp.path().join("biboumi.cfg");
    std::fs::write(
        &biboumi_conf,
        format!(
            "hostname=biboumi.localhost\npassword=bibi-secret\nxmpp_server_ip=127.0.0.1\n\
             port={}\ndb_name={}\nidentd_port=0\nlog_level=1\nlog_file={}\npolicy_directory={}\n",
            d.starttls.port(),
            tmp.path().join("biboumi.sqlite").display(),
            tmp.path().join("biboumi.log").display(),
            tmp.path().display(),
        ),
    )
    .expect("write");
    let _biboumi = Proc::spawn(
        std::process::Command::new("biboumi")
            .arg(&biboumi_conf)
            .current_dir(tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    d.wait_log("component attached, domain: biboumi.localhost", 1);

    // the IRC user is in the channel first
    let mut irc = Irc::connect(irc_addr, "ircuser");
    irc.send("JOIN #chan");
    irc.until(" 366 ");

    let room = format!("#chan%{irc_ip}@biboumi.localhost");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/biboumi_user.py");
    // guarded: killed if the test fails before it ends (and with the test process)
    let user = Proc::spawn(
        std::process::Command::new("python3")
            .arg(&script)
            .args([
                &d.starttls.port().to_string(),
                "localhost",
                &room,
                "ircuser",
            ])
            .env("SSL_CERT_FILE", &pki().ca)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped()),
    );

    // the XMPP user joins the channel on IRC, and its message reaches IRC from its nick
    let joined = irc.until(" JOIN ");
    assert!(joined.starts_with(":alice!"), "{joined}");
    let said = irc.until("PRIVMSG #chan :hello from xmpp");
    assert!(said.starts_with(":alice!"), "{said}");
    irc.send("PRIVMSG #chan :hello from irc");

    let (status, stdout, stderr) = user.output(Duration::from_secs(90));
    let log = std::fs::read_to_string(tmp.path().join("biboumi.log")).unwrap_or_default();
    assert!(
        status.success(),
        "the XMPP user failed ({status}):\n{stdout}\n{stderr}\nbiboumi:\n{log}"
    );
    for e in [
        "online",
        &format!("joined {room}"),
        "sees ircuser in the room",
        "got from ircuser: hello from irc",
    ] {
        assert!(
            stdout.contains(e),
            "missing {e:?} in:\n{stdout}\nbiboumi:\n{log}"
        );
    }
    irc.send("QUIT :done");
}

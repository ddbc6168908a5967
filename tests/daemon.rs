//! The daemon as an administrator meets it: configuration checks, account commands,
//! the connection cap, graceful shutdown.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn check_config_reports_every_problem_with_its_line() {
    let (ok, text) =
        check_config("channels = -1\nlog_level = \"loud\"\n[limits]\nmax_stanza_size = 5\n");
    assert!(!ok);
    assert!(text.contains("line 1:"), "{text}");
    assert!(text.contains("line 2:"), "{text}");
    let (ok, text) = check_config("[[domain]]\nname = \"example.org\"\n");
    assert!(ok, "{text}");
    // semantic problems: certificate without key, stanza limit too small
    let (_, text) = check_config(
        "[[domain]]\nname = \"example.org\"\ncertificate = \"x.pem\"\n[limits]\nmax_stanza_size = 5\n",
    );
    assert!(
        text.contains("line 3:") && text.contains("line 5:"),
        "{text}"
    );
}

#[test]
fn account_commands() {
    let d = Daemon::start();
    let list = d.cli(&["account", "list"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "alice@localhost\nbob@localhost\n"
    );
    let dup = d.cli(&["account", "add", "alice@localhost", "--password", "x"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    let bad = d.cli(&["account", "add", "carol@elsewhere.test", "--password", "x"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a hosted domain"));
    assert!(
        d.cli(&[
            "account",
            "passwd",
            "alice@localhost",
            "--password",
            "new-pw"
        ])
        .status
        .success()
    );
    assert!(d.cli(&["account", "del", "bob@localhost"]).status.success());
    let list = d.cli(&["account", "list"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout), "alice@localhost\n");
    // the running daemon sees the change at the next login
    let rt = tokio::runtime::Runtime::new().expect("rt");
    rt.block_on(async {
        let mut r = Raw::connect(d.starttls, "localhost").await;
        r.starttls().await;
        assert!(
            r.auth_plain("alice", "alice-pw")
                .await
                .contains("not-authorized")
        );
        assert!(
            r.auth_plain("alice", "new-pw")
                .await
                .starts_with("<success")
        );
        let mut r = Raw::connect(d.starttls, "localhost").await;
        r.starttls().await;
        assert!(
            r.auth_plain("bob", "bob-pw")
                .await
                .contains("not-authorized")
        );
    });
}

#[tokio::test]
async fn channels_cap_refuses_with_a_stream_error() {
    let d = Daemon::with(Options {
        top: "channels = 2".into(),
        ..Options::default()
    });
    let (mut a, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "1").await;
    let (_b, _) = Raw::login(d.starttls, "localhost", "bob", "bob-pw", "1").await;
    let mut third = Raw::connect(d.starttls, "localhost").await;
    let out = third.read_to_close().await;
    assert!(
        out.contains("<resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    // the two admitted sessions still work
    a.send("<message to='bob@localhost/1'><body>still here</body></message>")
        .await;
    drop(a);
    // a slot frees when a connection ends
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_c, jid) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "2").await;
    assert_eq!(jid, "alice@localhost/2");
}

#[tokio::test]
async fn channels_zero_means_no_listener() {
    let o = Options {
        top: "channels = 0".into(),
        ..Options::default()
    };
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\ndata_dir = \"{}\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[http]\naddress = \"127.0.0.1:0\"\n",
            o.top,
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let mut child = std::process::Command::new(xmppd_bin())
        .arg("--config")
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(&mut out);
    reader.read_line(&mut line).expect("read");
    if line.starts_with("admin ") {
        // the HTTP side's address
        line.clear();
        reader.read_line(&mut line).expect("read");
    }
    assert_eq!(line.trim(), "ready", "no listening line when channels = 0");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn sigterm_ends_every_stream_with_system_shutdown() {
    let mut d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "x").await;
    let mut pre = Raw::connect(d.starttls, "localhost").await;
    pre.open().await;
    let status = tokio::task::spawn_blocking(move || {
        let st = d.terminate();
        (st, d)
    });
    let out = a.read_to_close().await;
    assert!(
        out.contains("<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
        "{out}"
    );
    let out = pre.read_to_close().await;
    assert!(out.contains("<system-shutdown"), "{out}");
    let (st, _d) = status.await.expect("join");
    assert!(st.success(), "clean exit: {st:?}");
}

#[test]
fn generates_a_self_signed_certificate_on_first_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("data_dir = \"{}\"\n[[domain]]\nname = \"example.org\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[http]\naddress = \"127.0.0.1:0\"\n", dir.path().join("data").display()),
    )
    .expect("write");
    assert!(started(&cfg), "the daemon started");
    let cert = std::fs::read_to_string(dir.path().join("data/certs/selfsigned.crt"))
        .expect("certificate generated");
    assert!(cert.contains("BEGIN CERTIFICATE"));
    let db = dir.path().join("data/xmppd.sqlite");
    assert!(db.exists(), "database created under data_dir");
    // the data directory, the database and its journal files, the generated key:
    // the daemon's user only
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&dir.path().join("data")).ok(), Some(0o700));
    assert_eq!(mode(&db).ok(), Some(0o600));
    for journal in ["data/xmppd.sqlite-wal", "data/xmppd.sqlite-shm"] {
        if let Ok(m) = mode(&dir.path().join(journal)) {
            assert_eq!(m, 0o600, "{journal}");
        }
    }
    assert_eq!(
        mode(&dir.path().join("data/certs/selfsigned.key")).ok(),
        Some(0o600)
    );
}

/// A private key file readable by others is tightened to 0600 at start (issue 10).
#[test]
fn an_open_private_key_is_tightened_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("server.key");
    std::fs::copy(&pki().key, &key).expect("copy key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = \"{}\"\n[[domain]]\nname = \"localhost\"\n[[listener]]\naddress = \"127.0.0.1:0\"\n[http]\naddress = \"127.0.0.1:0\"\n\
             [tls]\ncertificate = \"{}\"\nkey = \"{}\"\n",
            dir.path().join("data").display(),
            pki().cert.display(),
            key.display()
        ),
    )
    .expect("write");
    assert!(started(&cfg), "the daemon started");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key mode {mode:o}");
}

/// Run the daemon on `cfg` until it says `ready` (then stop it); whether it did.
fn started(cfg: &std::path::Path) -> bool {
    use std::io::BufRead;
    let mut child = std::process::Command::new(xmppd_bin())
        .arg("--config")
        .arg(cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let ready = std::io::BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l == "ready");
    let _ = child.kill();
    let _ = child.wait();
    ready
}

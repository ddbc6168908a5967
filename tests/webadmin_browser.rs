//! The WebAdmin in a real browser: Debian's chromium, headless, driven by
//! playwright-core (`tests/browser/webadmin.mjs`). The script logs in, turns Auto
//! Signup off, adds a supplementary disco item, watches a connection appear on the
//! monitor, creates an account and deletes it; after each step this test checks the server over
//! XMPP (a raw registration refused, the item in disco#items, the account logging in)
//! and answers. Screenshots of every page go to a temporary directory, or to
//! `XMPPD_SCREENSHOTS` when set (that is how `docs/screenshots/` is made).
//! Needs node and chromium (`scripts/test` installs them); installs playwright-core with
//! `npm ci` in `tests/browser/` when missing. Skipped without them, except when `CI` or
//! `XMPPD_REQUIRE_BROWSER` is set: then it fails.

mod common;
use common::register::{login_works, register};
use common::*;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The node process, killed if the test fails before it ends.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const CHROMIUM: &str = "/usr/bin/chromium";

fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `tests/browser/` with playwright-core installed (`npm ci` when it is not).
fn browser_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        let st = std::process::Command::new("npm")
            .args(["ci", "--silent", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm");
        assert!(st.success(), "npm ci in {} failed", dir.display());
    }
    dir
}

#[tokio::test]
async fn an_administrator_uses_the_webadmin_in_chromium() {
    if !have("node") || !Path::new(CHROMIUM).exists() {
        let why = format!(
            "the browser test needs node and {CHROMIUM} (apt-get install nodejs npm chromium; scripts/test installs them)"
        );
        // in CI (and under scripts/test, which installs them) a missing browser is a
        // failure, not a silent skip
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("XMPPD_REQUIRE_BROWSER").is_none(),
            "{why}; CI or XMPPD_REQUIRE_BROWSER is set, so this is a failure"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = browser_dir();
    let mut o = Options {
        top: "admins = [\"boss@localhost\"]".into(),
        domain_keys: "auto_signup = true".into(),
        ..Options::default()
    };
    o.accounts.push(("boss".into(), "boss-pw".into()));
    o.accounts.push(("watcher".into(), "watcher-pw".into()));
    let d = Daemon::with(o);
    let http = std::fs::read_to_string(d.dir.path().join("data/admin.addr")).expect("admin.addr");
    let tmp = tempfile::tempdir().expect("tmp");
    let shots = std::env::var_os("XMPPD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    // Auto Signup is on before the browser turns it off
    assert_eq!(register(&d, "before", "pw").await, "result");

    let mut child = std::process::Command::new("node")
        .arg(dir.join("webadmin.mjs"))
        .current_dir(&dir)
        .env("BASE", format!("http://{}", http.trim()))
        .env("ADMIN", "boss@localhost")
        .env("PASSWORD", "boss-pw")
        .env("SHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    let mut to_node = child.stdin.take().expect("stdin");
    let out = child.stdout.take().expect("stdout");
    let mut node = Node(child);
    let (tx, mut from_node) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut watcher = None;
    let mut steps = Vec::new();
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), from_node.recv())
            .await
            .expect("the browser script stalled")
            .unwrap_or_else(|| panic!("the browser script ended after {steps:?}"));
        let Some(step) = line.strip_prefix("step ") else {
            assert!(
                !line.starts_with("error"),
                "{line}\ndaemon log:\n{}",
                d.log()
            );
            if line == "done" {
                break;
            }
            continue;
        };
        match step {
            "signup-off" => assert_ne!(register(&d, "after", "pw").await, "result"),
            "disco-added" => {
                let (mut r, _) =
                    Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await;
                r.send("<iq type='get' id='it' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
                    .await;
                let items = r.wait_for("id='it'").await;
                assert!(items.contains("jid='irc.example.net'"), "{items}");
                // the connection the monitor must show
                watcher =
                    Some(Raw::login(d.starttls, "localhost", "watcher", "watcher-pw", "w").await);
            }
            "monitor-saw" => {}
            "account-created" => assert!(login_works(&d, "from-browser", "browser-pw").await),
            "account-deleted" => assert!(!login_works(&d, "from-browser", "browser-pw").await),
            other => panic!("unknown step {other}"),
        }
        steps.push(step.to_string());
        to_node.write_all(b"ok\n").expect("answer");
    }
    drop(to_node);
    let st = node.0.wait().expect("node exit");
    assert!(st.success());
    assert_eq!(
        steps,
        [
            "signup-off",
            "disco-added",
            "monitor-saw",
            "account-created",
            "account-deleted"
        ]
    );
    for page in [
        "login",
        "server",
        "domains",
        "monitor",
        "federation",
        "accounts",
    ] {
        assert!(
            shots.join(format!("{page}.png")).exists(),
            "no screenshot of {page}"
        );
    }
    drop(watcher);
}

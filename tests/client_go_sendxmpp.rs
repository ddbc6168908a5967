//! go-sendxmpp (Debian's package, a Go client nobody here wrote) logs in over STARTTLS,
//! verifies our certificate, and delivers a message.

mod common;
use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

/// Send `body` to `to` as alice with the given password; blocking.
fn go_sendxmpp(server: SocketAddr, password: &str, to: &str, body: &str) -> Output {
    let mut child = Command::new("go-sendxmpp")
        .args([
            "-u",
            "alice@localhost",
            "-p",
            password,
            "-j",
            &server.to_string(),
            "--timeout",
            "10",
            to,
        ])
        .env("SSL_CERT_FILE", &pki().ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("go-sendxmpp is installed (apt-get install go-sendxmpp; .ci/run does it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write body");
    // its --timeout bounds connecting only: bound the whole run, and never leave it behind
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("go-sendxmpp did not finish within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("go-sendxmpp ran")
}

#[tokio::test]
async fn go_sendxmpp_delivers_a_message() {
    let d = Daemon::start();
    let (mut bob, _) = Raw::login(d.starttls, "localhost", "bob", "bob-pw", "desk").await;
    let server = d.starttls;
    let out = tokio::task::spawn_blocking(move || {
        go_sendxmpp(
            server,
            "alice-pw",
            "bob@localhost",
            "hello from go-sendxmpp",
        )
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "go-sendxmpp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = bob.wait_for("hello from go-sendxmpp").await;
    assert!(m.contains("from='alice@localhost/"), "{m}");
    // a wrong password is refused, and nothing is delivered
    let out = tokio::task::spawn_blocking(move || {
        go_sendxmpp(server, "wrong", "bob@localhost", "must not arrive")
    })
    .await
    .expect("join");
    assert!(!out.status.success(), "a wrong password must fail");
    bob.expect_only_presence(std::time::Duration::from_millis(300))
        .await;
}

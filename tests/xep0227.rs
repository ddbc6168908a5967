//! XEP-0227 export and import through the command line, checked by logging in over
//! XMPP: an export written by ejabberd 23.01, and xmppd to xmppd (on either backend,
//! see XMPPD_TEST_BACKEND).

mod common;
use common::*;
use std::path::PathBuf;

const D: &str = "a.test";

fn a_test(accounts: Vec<(String, String)>) -> Daemon {
    Daemon::with(Options {
        domain: D.into(),
        accounts,
        ..Options::default()
    })
}

/// The main file of `ejabberdctl export_piefxis` (tests/fixtures/ejabberd/make.sh).
fn ejabberd_export() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ejabberd/export");
    std::fs::read_dir(&dir)
        .expect("fixture directory")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".xml") && !n.contains('_'))
        })
        .expect("the main file of the ejabberd export")
}

fn cli_ok(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(
        out.status.success(),
        "xmppd {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn iq(r: &mut Raw, id: &str, payload: &str) -> String {
    r.send(&format!("<iq type='get' id='{id}'>{payload}</iq>"))
        .await;
    let reply = r.wait_for(&format!("id='{id}'")).await;
    assert!(reply.contains("type='result'"), "{reply}");
    reply
}

#[tokio::test]
async fn an_ejabberd_export_imports_and_its_users_log_in() {
    let d = a_test(Vec::new());
    let fixture = ejabberd_export();
    let out = cli_ok(&d, &["import", &fixture.to_string_lossy()]);
    assert!(out.contains("imported 3 accounts"), "{out}");
    // the SCRAM-SHA-256 keys ejabberd exported work with the passwords set there
    let (mut j, _) = Raw::login(d.starttls, D, "juliet", "juliet-pw", "balcony").await;
    let first = j.next_non_presence().await;
    let second = j.next_non_presence().await;
    assert!(first.contains("Wherefore art thou?"), "{first}");
    assert!(
        second.contains("waits &lt;here&gt;") && second.contains("<subject>Supper</subject>"),
        "{second}"
    );
    let roster = iq(&mut j, "r", "<query xmlns='jabber:iq:roster'/>").await;
    for needle in [
        "romeo@a.test",
        "<group>Lovers</group>",
        "nurse@a.test",
        "<group>Household</group>",
        "tybalt@capulet.test",
    ] {
        assert!(roster.contains(needle), "{needle}: {roster}");
    }
    let vcard = iq(&mut j, "v", "<vCard xmlns='vcard-temp'/>").await;
    assert!(vcard.contains("<FN>Juliet Capulet</FN>"), "{vcard}");
    let private = iq(
        &mut j,
        "p",
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>",
    )
    .await;
    assert!(private.contains("balcony@rooms.a.test"), "{private}");
    let blocked = iq(&mut j, "b", "<blocklist xmlns='urn:xmpp:blocking'/>").await;
    assert!(
        blocked.contains("paris@a.test") && blocked.contains("spam.test"),
        "{blocked}"
    );
    let (_r, _) = Raw::login(d.starttls, D, "romeo", "romeo-pw", "garden").await;
}

#[tokio::test]
async fn an_export_moves_accounts_and_their_data_to_another_server() {
    let from = a_test(vec![
        ("alice".into(), "alice-pw".into()),
        ("bob".into(), "bob-pw".into()),
    ]);
    let (mut a, _) = Raw::login(from.starttls, D, "alice", "alice-pw", "pc").await;
    a.send("<iq type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='bob@a.test' name='Bobby'><group>Pals</group></item></query></iq>")
        .await;
    a.wait_for("id='r1'").await;
    a.send(
        "<message to='bob@a.test' type='chat' id='off1'><body>while you were away</body></message>",
    )
    .await;
    from.wait_log("message stored offline", 1);
    let file = from.dir.path().join("dump.xml");
    let out = cli_ok(&from, &["export", &file.to_string_lossy()]);
    assert!(out.contains("exported 2 accounts"), "{out}");
    let text = std::fs::read_to_string(&file).expect("export written");
    assert!(text.contains("urn:xmpp:pie:0#scram"), "{text}");
    // a fresh server with no accounts
    let to = a_test(Vec::new());
    let out = cli_ok(&to, &["import", &file.to_string_lossy()]);
    assert!(out.contains("imported 2 accounts"), "{out}");
    let (mut b, _) = Raw::login(to.starttls, D, "bob", "bob-pw", "phone").await;
    let m = b.next_non_presence().await;
    assert!(
        m.contains("while you were away") && m.contains("id='off1'"),
        "{m}"
    );
    let (mut a, _) = Raw::login(to.starttls, D, "alice", "alice-pw", "pc").await;
    let roster = iq(&mut a, "r", "<query xmlns='jabber:iq:roster'/>").await;
    assert!(
        roster.contains("name='Bobby'") && roster.contains("<group>Pals</group>"),
        "{roster}"
    );
}

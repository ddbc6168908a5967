//! Service discovery (XEP-0030) of the server, its domains and accounts against the
//! real daemon: identities and features from what is enabled, and the administrator's
//! supplementary items, added and removed by a reload while the server runs.

mod common;
use common::*;

const ITEMS: &str = r#"disco_items = [
  { jid = "irc.example.net", name = "IRC gateway" },
  { jid = "lobby@rooms.example.net", name = "Lobby", node = "main" },
]"#;

const SECOND: &str = r#"
[[domain]]
name = "second.test"
disco_items = [{ jid = "only-second.example.net" }]
"#;

async fn ask(r: &mut Raw, to: &str, ns: &str, node: Option<&str>, id: &str) -> String {
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    r.send(&format!(
        "<iq type='get' id='{id}' to='{to}'><query xmlns='{ns}'{node}/></iq>"
    ))
    .await;
    r.wait_for(&format!("id='{id}'")).await
}

const INFO: &str = "http://jabber.org/protocol/disco#info";
const ITEMS_NS: &str = "http://jabber.org/protocol/disco#items";

/// The `<item/>` elements of a disco#items answer, as written.
fn items(reply: &str) -> Vec<String> {
    reply
        .split("<item ")
        .skip(1)
        .map(|s| format!("<item {}", &s[..s.find("/>").expect("item end") + 2]))
        .collect()
}

fn features(reply: &str) -> Vec<String> {
    reply
        .split("<feature var='")
        .skip(1)
        .map(|s| s[..s.find('\'').expect("var end")].to_string())
        .collect()
}

#[tokio::test]
async fn info_of_server_and_account_lists_what_works() {
    let d = Daemon::start();
    let (mut a, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await;
    let server = ask(&mut a, "localhost", INFO, None, "s").await;
    assert!(
        server.contains("<identity category='server' name='xmppd' type='im'/>"),
        "{server}"
    );
    let vars = features(&server);
    for v in [
        INFO,
        ITEMS_NS,
        "urn:xmpp:ping",
        "jabber:iq:version",
        "jabber:iq:register",
        "msgoffline",
        "urn:xmpp:blocking",
        "vcard-temp",
        "jabber:iq:private",
    ] {
        assert!(vars.iter().any(|x| x == v), "{v} missing: {vars:?}");
    }
    let mut dedup = vars.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), vars.len(), "each feature once: {vars:?}");
    // what the server advertises works for this user: jabber:iq:register answers
    let reg = ask(&mut a, "localhost", "jabber:iq:register", None, "g").await;
    assert!(reg.contains("<registered/>"), "{reg}");

    let account = ask(&mut a, "bob@localhost", INFO, None, "a").await;
    assert!(
        account.contains("<identity category='account' type='registered'/>"),
        "{account}"
    );
    let vars = features(&account);
    assert_eq!(vars, [INFO, "vcard-temp"], "{account}");
    let none = ask(&mut a, "nobody@localhost", INFO, None, "n").await;
    assert!(none.contains("<service-unavailable"), "{none}");
    let node = ask(&mut a, "localhost", INFO, Some("x"), "x").await;
    assert!(node.contains("<item-not-found"), "{node}");
}

#[tokio::test]
async fn supplementary_items_are_listed_and_follow_a_reload() {
    let d = Daemon::with(Options {
        domain_keys: ITEMS.into(),
        extra: SECOND.into(),
        ..Options::default()
    });
    let (mut a, _) = Raw::login(d.starttls, "localhost", "alice", "alice-pw", "r").await;
    let r = ask(&mut a, "localhost", ITEMS_NS, None, "1").await;
    assert!(
        r.contains("type='result'") && r.contains("from='localhost'"),
        "{r}"
    );
    // the chat-room service first, then the administrator's items in their order
    assert_eq!(
        items(&r),
        [
            "<item jid='conference.localhost' name='Chat rooms'/>",
            "<item jid='irc.example.net' name='IRC gateway'/>",
            "<item jid='lobby@rooms.example.net' name='Lobby' node='main'/>",
        ],
        "{r}"
    );
    // each domain has its own
    let r = ask(&mut a, "second.test", ITEMS_NS, None, "2").await;
    assert_eq!(
        items(&r),
        [
            "<item jid='conference.second.test' name='Chat rooms'/>",
            "<item jid='only-second.example.net'/>"
        ],
        "{r}"
    );
    // a node of the server's is not known
    let r = ask(&mut a, "localhost", ITEMS_NS, Some("main"), "3").await;
    assert!(r.contains("<item-not-found"), "{r}");
    // accounts list no items
    let r = ask(&mut a, "bob@localhost", ITEMS_NS, None, "4").await;
    assert!(r.contains("type='result'") && items(&r).is_empty(), "{r}");
    let r = ask(&mut a, "bob@localhost", ITEMS_NS, Some("x"), "4n").await;
    assert!(r.contains("<item-not-found"), "{r}");

    // the administrator adds one and deletes one; the same session sees it at once
    let text = std::fs::read_to_string(&d.config).expect("config");
    let changed = text.replace(
        r#"  { jid = "irc.example.net", name = "IRC gateway" },"#,
        r#"  { jid = "muc.example.org", name = "Rooms" },"#,
    );
    assert_ne!(text, changed);
    std::fs::write(&d.config, &changed).expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", 1);
    let r = ask(&mut a, "localhost", ITEMS_NS, None, "5").await;
    assert_eq!(
        items(&r),
        [
            "<item jid='conference.localhost' name='Chat rooms'/>",
            "<item jid='muc.example.org' name='Rooms'/>",
            "<item jid='lobby@rooms.example.net' name='Lobby' node='main'/>",
        ],
        "{r}"
    );
    // all of them gone
    let cleared = changed.replace(ITEMS_ITEMS_AFTER, "disco_items = []");
    std::fs::write(&d.config, cleared).expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("configuration reloaded", 2);
    let r = ask(&mut a, "localhost", ITEMS_NS, None, "6").await;
    assert_eq!(
        items(&r),
        ["<item jid='conference.localhost' name='Chat rooms'/>"],
        "{r}"
    );
}

/// [`ITEMS`] after the first reload's change.
const ITEMS_ITEMS_AFTER: &str = r#"disco_items = [
  { jid = "muc.example.org", name = "Rooms" },
  { jid = "lobby@rooms.example.net", name = "Lobby", node = "main" },
]"#;

#[test]
fn an_invalid_item_is_a_configuration_problem() {
    let (ok, text) =
        check_config("[[domain]]\nname = \"example.org\"\ndisco_items = [{ jid = \"a@b@c\" }]\n");
    assert!(!ok);
    assert!(text.contains("line 3:") && text.contains("a@b@c"), "{text}");
}

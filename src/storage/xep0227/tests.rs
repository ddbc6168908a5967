use super::*;
use crate::storage::writer::WriterLimits;
use crate::storage::{Sqlite, quiet};

const POLICY: PasswordPolicy = PasswordPolicy {
    iterations: 4096,
    keep_plain: false,
};

fn db(dir: &tempfile::TempDir, name: &str) -> Sqlite {
    Sqlite::open(
        &dir.path().join(name),
        2,
        WriterLimits {
            queue: 16,
            batch: 16,
        },
        quiet(),
    )
    .expect("open")
}

fn hosted() -> Vec<String> {
    vec!["a.test".to_string(), "b.test".to_string()]
}

/// Everything one account can hold, in `db`.
fn fill(db: &Sqlite) {
    let alice = Credentials::derive("alice-pw", 4096, false);
    db.create_account("a.test", "alice", &alice)
        .expect("create");
    db.create_account("b.test", "bob", &Credentials::derive("bob-pw", 4096, true))
        .expect("create");
    let mut romeo = Item::new("romeo@b.test");
    romeo.name = Some("Romeo & <Co>".into());
    romeo.groups = vec!["Lovers".into(), "Verona".into()];
    romeo.sub = Sub::Both;
    db.roster_put("a.test", "alice", &romeo, 1).expect("put");
    let mut asked = Item::new("tybalt@c.test");
    asked.ask = true;
    asked.approved = true;
    db.roster_put("a.test", "alice", &asked, 2).expect("put");
    db.pending_in(
        "a.test",
        "alice",
        "paris@b.test",
        Some("<presence xmlns='jabber:client' from='paris@b.test/x' to='alice@a.test' type='subscribe'/>"),
    )
    .expect("pending");
    for i in 0..3 {
        db.offline_push(
            "a.test",
            "alice",
            &format!("<message xmlns='jabber:client' from='bob@b.test/pc' to='alice@a.test' type='chat' id='m{i}'><body>hi &amp; {i}</body><delay xmlns='urn:xmpp:delay' from='a.test' stamp='2026-01-01T00:00:0{i}Z'>Offline Storage</delay></message>"),
            100,
        )
        .expect("push");
    }
    db.document_set(
        "a.test",
        "alice",
        "vcard-temp",
        "<vCard xmlns='vcard-temp'><FN>Alice</FN><NICKNAME>al</NICKNAME></vCard>",
    )
    .expect("vcard");
    db.document_set(
        "a.test",
        "alice",
        "private:storage:storage:bookmarks",
        "<storage xmlns='storage:bookmarks'><conference jid='room@muc.a.test' autojoin='true'/></storage>",
    )
    .expect("private");
    db.document_set(
        "a.test",
        "alice",
        "private:prefs:urn:example:prefs",
        "<prefs xmlns='urn:example:prefs'><x>1</x></prefs>",
    )
    .expect("private");
    db.blocklist_set(
        "a.test",
        "alice",
        &["spam.test".into(), "eve@b.test".into()],
    )
    .expect("block");
}

/// XML with its attributes in one order (the parser's), so that equal elements compare
/// equal as text.
fn normal(xml: &str) -> String {
    to_string(&xml.parse::<Element>().expect("stored XML parses"))
}

/// Everything stored for one account, comparable across databases.
fn snapshot(db: &Sqlite, domain: &str, user: &str) -> String {
    let mut r = db.roster_load(domain, user).expect("roster");
    r.ver = 0;
    for p in &mut r.pending_in {
        p.1 = normal(&p.1);
    }
    let offline: Vec<String> = db
        .offline_list(domain, user)
        .expect("offline")
        .into_iter()
        .map(|(_, m)| normal(&m))
        .collect();
    let docs: Vec<(String, String)> = db
        .document_list(domain, user)
        .expect("docs")
        .into_iter()
        .map(|(k, x)| (k, normal(&x)))
        .collect();
    format!(
        "{:?}\n{:?}\n{offline:?}\n{docs:?}\n{:?}",
        db.credentials(domain, user).expect("creds"),
        r,
        db.blocklist_get(domain, user).expect("blocked"),
    )
}

#[test]
fn export_then_import_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = db(&dir, "a.sqlite");
    fill(&a);
    let mut out = Vec::new();
    let sum = export(&a, &hosted(), &mut out).expect("export");
    assert_eq!(
        (
            sum.accounts,
            sum.roster_items,
            sum.offline_messages,
            sum.documents,
            sum.blocked
        ),
        (2, 2, 3, 3, 2)
    );
    let file = dir.path().join("dump.xml");
    std::fs::write(&file, &out).expect("write");
    let b = db(&dir, "b.sqlite");
    // bob's password is kept in the source: keep it here too
    let keep = PasswordPolicy {
        keep_plain: true,
        ..POLICY
    };
    let sum = import(&b, &file, &hosted(), keep).expect("import");
    assert!(sum.warnings.is_empty(), "{:?}", sum.warnings);
    assert_eq!(
        (
            sum.accounts,
            sum.roster_items,
            sum.offline_messages,
            sum.documents,
            sum.blocked
        ),
        (2, 2, 3, 3, 2)
    );
    for (d, u) in [("a.test", "alice"), ("b.test", "bob")] {
        assert_eq!(snapshot(&a, d, u), snapshot(&b, d, u), "{u}@{d}");
    }
    // the same file again: what is there is updated, offline messages are added
    let sum = import(&b, &file, &hosted(), keep).expect("import again");
    assert_eq!(sum.warnings.len(), 2, "{:?}", sum.warnings);
    assert_eq!(b.offline_list("a.test", "alice").expect("list").len(), 6);
    assert_eq!(
        b.roster_load("a.test", "alice")
            .expect("roster")
            .items
            .len(),
        2
    );
    // and the bytes of a second export equal the first but for roster versions
    let mut again = Vec::new();
    export(&b, &hosted(), &mut again).expect("export");
    assert!(String::from_utf8_lossy(&again).contains("Romeo &amp; &lt;Co&gt;"));
}

#[test]
fn passwords_older_namespace_and_single_hash_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = Credentials::derive("sha1-pw", 4096, false);
    let b64 = |b: &[u8]| B64.encode(b);
    let file = dir.path().join("old.xml");
    std::fs::write(
        &file,
        format!(
            "<?xml version='1.0' encoding='UTF-8'?>
<server-data xmlns='http://www.xmpp.org/extensions/xep-0227.html#ns'>
  <host jid='A.test'>
    <user name='plain' password='s3cret'/>
    <user name='onlysha1'>
      <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>
        <iter-count>4096</iter-count><salt>{}</salt>
        <server-key>{}</server-key><stored-key>{}</stored-key>
      </scram-credentials>
    </user>
    <user name='not a@valid user'/>
    <unknown xmlns='urn:example'/>
  </host>
  <host jid='elsewhere.test'><user name='x' password='y'/></host>
</server-data>",
            b64(&c.salt),
            b64(&c.sha1.server_key),
            b64(&c.sha1.stored_key)
        ),
    )
    .expect("write");
    let d = db(&dir, "x.sqlite");
    let sum = import(&d, &file, &hosted(), POLICY).expect("import");
    assert_eq!(sum.accounts, 3);
    let w = sum.warnings.join("\n");
    for needle in [
        "only SCRAM-SHA-1",
        "not a valid user name",
        "skipped <unknown",
        "elsewhere.test is not a hosted domain",
    ] {
        assert!(w.contains(needle), "{needle}: {w}");
    }
    let plain = d
        .credentials("a.test", "plain")
        .expect("get")
        .expect("there");
    assert!(plain.verify_password("s3cret"));
    assert!(plain.plain.is_none(), "kept as SCRAM keys only");
    let sha1 = d
        .credentials("a.test", "onlysha1")
        .expect("get")
        .expect("there");
    assert_eq!(sha1.sha1, c.sha1);
    assert_eq!(sha1.salt, c.salt);
    assert!(sha1.sha256.stored_key.is_empty());
}

#[test]
fn malformed_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = db(&dir, "x.sqlite");
    for (name, text) in [
        ("notxml.xml", "<server-data xmlns='urn:xmpp:pie:0'><host"),
        (
            "wrongroot.xml",
            "<html xmlns='http://www.w3.org/1999/xhtml'/>",
        ),
        (
            "nojid.xml",
            "<server-data xmlns='urn:xmpp:pie:0'><host/></server-data>",
        ),
        (
            "missing.xml",
            "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='nope.xml'/></server-data>",
        ),
        (
            "loop.xml",
            "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='loop.xml'/></server-data>",
        ),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).expect("write");
        assert!(import(&d, &f, &hosted(), POLICY).is_err(), "{name}");
    }
    assert!(import(&d, &dir.path().join("absent.xml"), &hosted(), POLICY).is_err());
}

/// The export ejabberd 23.01 wrote (`ejabberdctl export_piefxis`, regenerated by
/// tests/fixtures/ejabberd/make.sh): a main file including the host's file, SCRAM-SHA-256
/// keys base64-encoded twice, the blocklist as a privacy list.
#[test]
fn imports_an_ejabberd_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = db(&dir, "x.sqlite");
    let sum = import(&d, &ejabberd_export(), &hosted(), POLICY).expect("import");
    assert_eq!(
        (
            sum.accounts,
            sum.roster_items,
            sum.offline_messages,
            sum.documents,
            sum.blocked
        ),
        (3, 3, 2, 2, 2),
        "{sum:?}"
    );
    let c = d
        .credentials("a.test", "juliet")
        .expect("get")
        .expect("there");
    assert!(c.verify_password("juliet-pw"), "SCRAM-SHA-256 keys decoded");
    assert!(!c.verify_password("romeo-pw"));
    let r = d.roster_load("a.test", "juliet").expect("roster");
    let romeo = r
        .items
        .iter()
        .find(|i| i.jid == "romeo@a.test")
        .expect("romeo");
    assert_eq!(
        (romeo.sub, romeo.groups.clone()),
        (Sub::Both, vec!["Lovers".to_string()])
    );
    let nurse = r
        .items
        .iter()
        .find(|i| i.jid == "nurse@a.test")
        .expect("nurse");
    assert_eq!(nurse.groups, ["Family", "Household"]);
    let off = d.offline_list("a.test", "juliet").expect("offline");
    assert!(off[0].1.contains("Wherefore art thou?"), "{}", off[0].1);
    assert!(off[1].1.contains("waits &lt;here&gt;"), "{}", off[1].1);
    assert_eq!(
        d.blocklist_get("a.test", "juliet").expect("blocked"),
        ["paris@a.test", "spam.test"]
    );
    let vcard = d
        .document_get("a.test", "juliet", "vcard-temp")
        .expect("get")
        .expect("vcard");
    assert!(vcard.contains("Juliet Capulet"), "{vcard}");
    assert!(
        d.document_get("a.test", "juliet", "private:storage:storage:bookmarks")
            .expect("get")
            .is_some_and(|x| x.contains("balcony@rooms.a.test"))
    );
}

/// The main file of the ejabberd export fixture.
pub fn ejabberd_export() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ejabberd/export");
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

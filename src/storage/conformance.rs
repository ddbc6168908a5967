//! What every backend must do, run against each of them (SQLite here; PostgreSQL in
//! `postgres.rs`, against a real server).

use std::sync::Arc;
use xmppd_actors::storage::{Backend, StorageError};
use xmppd_proto::auth::scram::Credentials;
use xmppd_proto::im::roster::{Item, Sub};

pub fn accounts(db: &dyn Backend) {
    let creds = Credentials::derive("pw", 64, false);
    db.create_account("a.test", "alice", &creds)
        .expect("create");
    assert_eq!(
        db.create_account("a.test", "alice", &creds),
        Err(StorageError::Exists)
    );
    assert_eq!(
        db.credentials("a.test", "alice").expect("get"),
        Some(creds.clone())
    );
    assert_eq!(db.credentials("b.test", "alice").expect("get"), None);
    assert_eq!(
        db.list_accounts("a.test").expect("list"),
        vec!["alice".to_string()]
    );
    let new = Credentials::derive("pw2", 64, true);
    db.set_credentials("a.test", "alice", &new).expect("passwd");
    assert!(
        db.credentials("a.test", "alice")
            .expect("get")
            .is_some_and(|c| c.verify_password("pw2"))
    );
    assert_eq!(
        db.set_credentials("a.test", "bob", &new),
        Err(StorageError::NotFound)
    );
    db.delete_account("a.test", "alice").expect("del");
    assert_eq!(
        db.delete_account("a.test", "alice"),
        Err(StorageError::NotFound)
    );
}

pub fn roster_offline_documents_blocklist(db: &dyn Backend) {
    db.create_account("a.test", "alice", &Credentials::derive("pw", 64, false))
        .expect("create");
    let mut item = Item::new("bob@a.test");
    item.groups = vec!["Friends".into(), "Work".into()];
    item.name = Some("Bob".into());
    item.sub = Sub::To;
    item.ask = true;
    db.roster_put("a.test", "alice", &item, 3).expect("put");
    db.pending_in(
        "a.test",
        "alice",
        "carol@b.test",
        Some("<presence type='subscribe'/>"),
    )
    .expect("pending");
    let r = db.roster_load("a.test", "alice").expect("load");
    assert_eq!(r.ver, 3);
    assert_eq!(r.items, vec![item]);
    assert_eq!(r.pending_in.len(), 1);
    db.roster_remove("a.test", "alice", "bob@a.test", 4)
        .expect("remove");
    let r = db.roster_load("a.test", "alice").expect("load");
    assert!(r.items.is_empty());
    assert_eq!(r.ver, 4);
    db.pending_in("a.test", "alice", "carol@b.test", None)
        .expect("clear");
    for i in 0..3 {
        db.offline_push("a.test", "alice", &format!("<message id='{i}'/>"), 3)
            .expect("push");
    }
    assert_eq!(
        db.offline_push("a.test", "alice", "<message/>", 3),
        Err(StorageError::Full)
    );
    assert!(db.offline_waiting("a.test", "alice").expect("waiting"));
    assert!(!db.offline_waiting("a.test", "bob").expect("waiting"));
    let msgs = db.offline_list("a.test", "alice").expect("list");
    assert_eq!(
        msgs.iter().map(|m| m.1.as_str()).collect::<Vec<_>>(),
        [
            "<message id='0'/>",
            "<message id='1'/>",
            "<message id='2'/>"
        ]
    );
    db.offline_delete("a.test", "alice", msgs[1].0)
        .expect("delete");
    assert_eq!(db.offline_list("a.test", "alice").expect("list").len(), 1);
    db.document_set(
        "a.test",
        "alice",
        "vcard-temp",
        "<vCard xmlns='vcard-temp'/>",
    )
    .expect("set");
    db.document_set(
        "a.test",
        "alice",
        "vcard-temp",
        "<vCard xmlns='vcard-temp'><FN>A</FN></vCard>",
    )
    .expect("replace");
    assert_eq!(
        db.document_get("a.test", "alice", "vcard-temp")
            .expect("get")
            .as_deref(),
        Some("<vCard xmlns='vcard-temp'><FN>A</FN></vCard>")
    );
    db.document_set(
        "a.test",
        "alice",
        "private:storage:storage:bookmarks",
        "<storage xmlns='storage:bookmarks'/>",
    )
    .expect("set");
    assert_eq!(
        db.document_list("a.test", "alice")
            .expect("list")
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["private:storage:storage:bookmarks", "vcard-temp"]
    );
    db.blocklist_set(
        "a.test",
        "alice",
        &["spam@x".into(), "evil.example".into(), "spam@x".into()],
    )
    .expect("set");
    assert_eq!(
        db.blocklist_get("a.test", "alice").expect("get"),
        ["evil.example", "spam@x"]
    );
    db.delete_account("a.test", "alice").expect("delete");
    assert!(db.offline_list("a.test", "alice").expect("list").is_empty());
    assert!(db.blocklist_get("a.test", "alice").expect("get").is_empty());
    assert!(
        db.document_get("a.test", "alice", "vcard-temp")
            .expect("get")
            .is_none()
    );
    assert!(
        db.roster_load("a.test", "alice")
            .expect("load")
            .pending_in
            .is_empty()
    );
}

/// Offline messages queued without waiting (as the account actor stores them): stored
/// in the order queued, the quota exact, each answered after its commit; the blocking
/// form queues behind them.
pub fn offline_queued(db: &dyn Backend) {
    let mut acks = Vec::new();
    for i in 0..6 {
        let m = format!("<message id='{i}'/>");
        let ack = db
            .offline_try_queue("q.test", "dora", &m, 5)
            .unwrap_or_else(|| db.offline_queue("q.test", "dora", &m, 5));
        acks.push(ack);
    }
    let last = db.offline_queue("q.test", "dora", "<message id='last'/>", 7);
    let outcomes: Vec<_> = acks
        .into_iter()
        .map(|a| a.blocking_recv().expect("answered"))
        .collect();
    assert_eq!(
        outcomes,
        [
            Ok(()),
            Ok(()),
            Ok(()),
            Ok(()),
            Ok(()),
            Err(StorageError::Full)
        ]
    );
    assert_eq!(last.blocking_recv().expect("answered"), Ok(()));
    let ids: Vec<String> = db
        .offline_list("q.test", "dora")
        .expect("list")
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        ids,
        [
            "<message id='0'/>",
            "<message id='1'/>",
            "<message id='2'/>",
            "<message id='3'/>",
            "<message id='4'/>",
            "<message id='last'/>"
        ]
    );
}

/// Many threads write at once (offline messages to several accounts, roster items,
/// account creations): every write succeeds, nothing is refused because writes met.
pub fn concurrent_writes_all_succeed(db: Arc<dyn Backend>) {
    const THREADS: usize = 16;
    const EACH: usize = 60;
    let mut handles = Vec::new();
    for t in 0..THREADS {
        let db = db.clone();
        handles.push(std::thread::spawn(move || {
            for i in 0..EACH {
                let user = format!("u{}", t % 4);
                db.offline_push("c.test", &user, &format!("<message id='{t}-{i}'/>"), 10_000)
                    .expect("offline push");
                if i % 5 == 0 {
                    let item = Item::new(&format!("x{t}-{i}@c.test"));
                    db.roster_put("c.test", "roster", &item, (t * EACH + i) as u64)
                        .expect("roster put");
                    db.roster_load("c.test", "roster").expect("roster load");
                }
                if i % 20 == 0 {
                    db.create_account(
                        "c.test",
                        &format!("n{t}-{i}"),
                        &Credentials::derive("pw", 64, false),
                    )
                    .expect("create");
                }
            }
        }));
    }
    for h in handles {
        h.join().expect("writer thread");
    }
    let stored: usize = (0..4)
        .map(|u| {
            db.offline_list("c.test", &format!("u{u}"))
                .expect("list")
                .len()
        })
        .sum();
    assert_eq!(stored, THREADS * EACH);
    assert_eq!(
        db.roster_load("c.test", "roster")
            .expect("load")
            .items
            .len(),
        THREADS * EACH.div_ceil(5)
    );
    // the quota holds under concurrency too: never more than the limit stored
    let mut handles = Vec::new();
    for t in 0..8 {
        let db = db.clone();
        handles.push(std::thread::spawn(move || {
            (0..20)
                .filter(|i| {
                    db.offline_push("c.test", "quota", &format!("<m id='{t}-{i}'/>"), 50)
                        .is_ok()
                })
                .count()
        }));
    }
    let ok: usize = handles.into_iter().map(|h| h.join().expect("thread")).sum();
    assert_eq!(ok, 50);
    assert_eq!(db.offline_list("c.test", "quota").expect("list").len(), 50);
}

/// Persistent chat rooms: saved, replaced, listed by service, deleted, with their history.
pub fn rooms(db: &dyn Backend) {
    assert_eq!(db.room_get("r@muc.a.test").expect("get"), None);
    db.room_set("muc.a.test", "r@muc.a.test", "{\"v\":1}")
        .expect("set");
    db.room_set("muc.a.test", "s@muc.a.test", "{}")
        .expect("set");
    db.room_set("muc.b.test", "t@muc.b.test", "{}")
        .expect("set");
    db.room_set("muc.a.test", "r@muc.a.test", "{\"v\":2}")
        .expect("replace");
    assert_eq!(
        db.room_get("r@muc.a.test").expect("get").as_deref(),
        Some("{\"v\":2}")
    );
    assert_eq!(
        db.room_list("muc.a.test").expect("list"),
        vec![
            ("r@muc.a.test".to_string(), "{\"v\":2}".to_string()),
            ("s@muc.a.test".to_string(), "{}".to_string())
        ]
    );
    let m = |seq: u64| {
        (
            seq,
            1000 + seq,
            format!("<message><body>{seq}</body></message>"),
        )
    };
    // history: added in batches, bounded to the newest `keep`, replaced by seq
    db.room_history_add("r@muc.a.test", (1..=3).map(m).collect(), 4)
        .expect("history");
    db.room_history_add("r@muc.a.test", (3..=6).map(m).collect(), 4)
        .expect("history");
    assert_eq!(
        db.room_history("r@muc.a.test").expect("history"),
        (3..=6).map(m).collect::<Vec<_>>()
    );
    // a late write of older messages neither trims newer ones nor brings back
    // trimmed ones: the bound counts from the newest stored
    db.room_history_add("r@muc.a.test", (1..=2).map(m).collect(), 4)
        .expect("history");
    assert_eq!(
        db.room_history("r@muc.a.test").expect("history"),
        (3..=6).map(m).collect::<Vec<_>>()
    );
    assert!(db.room_history("s@muc.a.test").expect("none").is_empty());
    // a room that is not saved keeps none
    db.room_history_add("nobody@muc.a.test", vec![m(1)], 4)
        .expect("history");
    assert!(
        db.room_history("nobody@muc.a.test")
            .expect("none")
            .is_empty()
    );
    db.room_delete("r@muc.a.test").expect("delete");
    assert_eq!(db.room_get("r@muc.a.test").expect("get"), None);
    assert_eq!(db.room_list("muc.a.test").expect("list").len(), 1);
    assert!(db.room_history("r@muc.a.test").expect("gone").is_empty());
}

//! XEP-0227 (Portable Import/Export Format for XMPP-IM Servers): `xmppd export FILE`
//! and `xmppd import FILE`, through the [`Backend`] trait, so either backend reads and
//! writes it.
//!
//! What one `<user/>` carries, both ways: SCRAM keys (`urn:xmpp:pie:0#scram`, SHA-1 and
//! SHA-256) or the password, the roster (`jabber:iq:roster`), offline messages
//! (`<offline-messages/>`), the vCard (`vcard-temp`), private XML (`jabber:iq:private`),
//! the blocklist (`urn:xmpp:blocking`), and subscription requests waiting for an answer
//! (an xmppd extension element, [`NS_PENDING`]; other servers skip it).
//!
//! Import also reads what other servers write: the older namespace of the format,
//! hosts split into files joined with XInclude (ejabberd's `export_piefxis`), the SCRAM
//! values ejabberd base64-encodes twice, and ejabberd's blocklist, which it exports as
//! the privacy list "Blocked contacts". Anything else it meets is skipped and reported.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use minidom::Element;
use std::path::{Path, PathBuf};
use xmppd_actors::storage::{Backend, StorageError};
use xmppd_proto::auth::scram::{Credentials, ScramKeys};
use xmppd_proto::im::roster::{Item, Sub};
use xmppd_proto::stanza::set_attr;
use xmppd_proto::xml::writer::to_string;

pub const NS_PIE: &str = "urn:xmpp:pie:0";
/// The namespace of the format's first versions (older ejabberd).
const NS_PIE_OLD: &str = "http://www.xmpp.org/extensions/xep-0227.html#ns";
const NS_SCRAM: &str = "urn:xmpp:pie:0#scram";
const NS_XINCLUDE: &str = "http://www.w3.org/2001/XInclude";
const NS_ROSTER: &str = "jabber:iq:roster";
const NS_PRIVATE: &str = "jabber:iq:private";
const NS_PRIVACY: &str = "jabber:iq:privacy";
const NS_BLOCKING: &str = "urn:xmpp:blocking";
const NS_VCARD: &str = "vcard-temp";
const NS_CLIENT: &str = "jabber:client";
/// xmppd's element for inbound subscription requests not yet answered: the
/// `<presence type='subscribe'/>` stanzas, as they will be delivered again.
pub const NS_PENDING: &str = "urn:xmpp:xmppd:pie:pending:0";
/// ejabberd's name for the privacy list that holds its blocklist.
const EJABBERD_BLOCKLIST: &str = "Blocked contacts";
/// Largest file read (the whole file is held in memory while it is imported).
const MAX_FILE: u64 = 1 << 30;
/// XInclude nesting followed at most.
const MAX_INCLUDE_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum PieError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not well-formed XML: {msg}", path.display())]
    Xml { path: PathBuf, msg: String },
    #[error("{0}")]
    Format(String),
    #[error("{who}: {source}")]
    Storage { who: String, source: StorageError },
}

/// What an import or export did; `warnings` says what was skipped and why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub accounts: usize,
    pub roster_items: usize,
    pub offline_messages: usize,
    pub documents: usize,
    pub blocked: usize,
    pub warnings: Vec<String>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} accounts, {} roster items, {} offline messages, {} documents (vCard, private XML), {} blocked JIDs",
            self.accounts, self.roster_items, self.offline_messages, self.documents, self.blocked
        )
    }
}

fn storage(who: &str) -> impl FnOnce(StorageError) -> PieError + '_ {
    move |source| PieError::Storage {
        who: who.to_string(),
        source,
    }
}

// ------------------------------------------------------------------ export --

/// Write every account of `domains` as one XEP-0227 document.
pub fn export(
    db: &dyn Backend,
    domains: &[String],
    out: &mut dyn std::io::Write,
) -> Result<Summary, PieError> {
    let io = |source| PieError::Io {
        path: PathBuf::from("(output)"),
        source,
    };
    let mut sum = Summary::default();
    out.write_all(b"<?xml version='1.0' encoding='UTF-8'?>\n")
        .map_err(io)?;
    out.write_all(format!("<server-data xmlns='{NS_PIE}'>\n").as_bytes())
        .map_err(io)?;
    for d in domains {
        let mut host = Element::bare("host", NS_PIE);
        set_attr(&mut host, "jid", d);
        let open = to_string(&host);
        // `<host .../>` opened and closed around the users, written one at a time
        let open = open.trim_end_matches("/>").to_string() + ">\n";
        out.write_all(open.as_bytes()).map_err(io)?;
        for user in db.list_accounts(d).map_err(storage(d))? {
            let el = user_element(db, d, &user, &mut sum)?;
            out.write_all(to_string(&el).as_bytes()).map_err(io)?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.write_all(b"</host>\n").map_err(io)?;
    }
    out.write_all(b"</server-data>\n").map_err(io)?;
    Ok(sum)
}

fn text_el(name: &str, ns: &str, text: &str) -> Element {
    let mut e = Element::bare(name, ns);
    e.append_text(text);
    e
}

fn scram_element(mech: &str, c: &Credentials, k: &ScramKeys) -> Element {
    let mut s = Element::bare("scram-credentials", NS_SCRAM);
    set_attr(&mut s, "mechanism", mech);
    s.append_child(text_el("iter-count", NS_SCRAM, &c.iterations.to_string()));
    s.append_child(text_el("salt", NS_SCRAM, &B64.encode(&c.salt)));
    s.append_child(text_el("server-key", NS_SCRAM, &B64.encode(&k.server_key)));
    s.append_child(text_el("stored-key", NS_SCRAM, &B64.encode(&k.stored_key)));
    s
}

fn parse_stored(xml: &str, who: &str) -> Result<Element, PieError> {
    xml.parse::<Element>()
        .map_err(|e| PieError::Format(format!("{who}: a stored document does not parse: {e}")))
}

fn user_element(
    db: &dyn Backend,
    domain: &str,
    user: &str,
    sum: &mut Summary,
) -> Result<Element, PieError> {
    let who = format!("{user}@{domain}");
    let mut u = Element::bare("user", NS_PIE);
    set_attr(&mut u, "name", user);
    if let Some(c) = db.credentials(domain, user).map_err(storage(&who))? {
        if let Some(p) = &c.plain {
            set_attr(&mut u, "password", p);
        }
        for (mech, k) in [("SCRAM-SHA-1", &c.sha1), ("SCRAM-SHA-256", &c.sha256)] {
            if !k.stored_key.is_empty() {
                u.append_child(scram_element(mech, &c, k));
            }
        }
    }
    sum.accounts += 1;
    let r = db.roster_load(domain, user).map_err(storage(&who))?;
    if !r.items.is_empty() {
        let mut q = Element::bare("query", NS_ROSTER);
        set_attr(&mut q, "ver", &r.ver.to_string());
        for i in &r.items {
            let mut e = Element::bare("item", NS_ROSTER);
            set_attr(&mut e, "jid", &i.jid);
            if let Some(n) = &i.name {
                set_attr(&mut e, "name", n);
            }
            set_attr(&mut e, "subscription", i.sub.as_str());
            if i.ask {
                set_attr(&mut e, "ask", "subscribe");
            }
            if i.approved {
                set_attr(&mut e, "approved", "true");
            }
            for g in &i.groups {
                e.append_child(text_el("group", NS_ROSTER, g));
            }
            q.append_child(e);
        }
        sum.roster_items += r.items.len();
        u.append_child(q);
    }
    if !r.pending_in.is_empty() {
        let mut p = Element::bare("pending", NS_PENDING);
        for (_, stanza) in &r.pending_in {
            p.append_child(parse_stored(stanza, &who)?);
        }
        u.append_child(p);
    }
    let offline = db.offline_list(domain, user).map_err(storage(&who))?;
    if !offline.is_empty() {
        let mut o = Element::bare("offline-messages", NS_PIE);
        for (_, m) in &offline {
            o.append_child(parse_stored(m, &who)?);
        }
        sum.offline_messages += offline.len();
        u.append_child(o);
    }
    let mut private = Element::bare("query", NS_PRIVATE);
    for (key, xml) in db.document_list(domain, user).map_err(storage(&who))? {
        let el = parse_stored(&xml, &who)?;
        sum.documents += 1;
        if key == "vcard-temp" {
            u.append_child(el);
        } else {
            private.append_child(el);
        }
    }
    if private.children().next().is_some() {
        u.append_child(private);
    }
    let blocked = db.blocklist_get(domain, user).map_err(storage(&who))?;
    if !blocked.is_empty() {
        let mut b = Element::bare("blocklist", NS_BLOCKING);
        for j in &blocked {
            let mut i = Element::bare("item", NS_BLOCKING);
            set_attr(&mut i, "jid", j);
            b.append_child(i);
        }
        sum.blocked += blocked.len();
        u.append_child(b);
    }
    Ok(u)
}

// ------------------------------------------------------------------ import --

/// How imported passwords become credentials (the server's `[auth]` settings).
#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub iterations: u32,
    pub keep_plain: bool,
}

fn read_root(path: &Path) -> Result<Element, PieError> {
    let io = |source| PieError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE {
        return Err(PieError::Format(format!(
            "{}: {len} bytes, more than the {MAX_FILE} this importer reads",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    text.parse::<Element>().map_err(|e| PieError::Xml {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

fn is_pie(el: &Element, name: &str) -> bool {
    el.is(name, NS_PIE) || el.is(name, NS_PIE_OLD)
}

/// Import a XEP-0227 file (and the files it includes) into `db`. Accounts that exist
/// already are updated: credentials replaced, roster items and documents set, offline
/// messages added, blocked JIDs added. Hosts that are not served are imported too, with
/// a warning.
pub fn import(
    db: &dyn Backend,
    path: &Path,
    hosted: &[String],
    policy: PasswordPolicy,
) -> Result<Summary, PieError> {
    let mut sum = Summary::default();
    let root = read_root(path)?;
    let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    walk(db, &root, &dir, 0, hosted, policy, &mut sum)?;
    Ok(sum)
}

fn walk(
    db: &dyn Backend,
    el: &Element,
    dir: &Path,
    depth: usize,
    hosted: &[String],
    policy: PasswordPolicy,
    sum: &mut Summary,
) -> Result<(), PieError> {
    if is_pie(el, "server-data") {
        for c in el.children() {
            walk(db, c, dir, depth, hosted, policy, sum)?;
        }
    } else if is_pie(el, "host") {
        host(db, el, dir, depth, hosted, policy, sum)?;
    } else if el.is("include", NS_XINCLUDE) {
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(PieError::Format(format!(
                "XInclude nested deeper than {MAX_INCLUDE_DEPTH}"
            )));
        }
        let href = el
            .attr("href")
            .ok_or_else(|| PieError::Format("<xi:include/> without href".into()))?;
        let file = dir.join(href);
        let inc = read_root(&file)?;
        let sub = file.parent().unwrap_or(dir).to_path_buf();
        walk(db, &inc, &sub, depth + 1, hosted, policy, sum)?;
    } else {
        return Err(PieError::Format(format!(
            "expected <server-data/> or <host/> in {NS_PIE}, found <{} xmlns='{}'>",
            el.name(),
            el.ns()
        )));
    }
    Ok(())
}

fn host(
    db: &dyn Backend,
    el: &Element,
    dir: &Path,
    depth: usize,
    hosted: &[String],
    policy: PasswordPolicy,
    sum: &mut Summary,
) -> Result<(), PieError> {
    let domain = el
        .attr("jid")
        .map(str::to_ascii_lowercase)
        .ok_or_else(|| PieError::Format("<host/> without jid".into()))?;
    if !hosted.contains(&domain) {
        sum.warnings.push(format!(
            "{domain} is not a hosted domain: its accounts are imported, and served once it is configured"
        ));
    }
    for c in el.children() {
        if is_pie(c, "user") {
            user(db, &domain, c, policy, sum)?;
        } else if c.is("include", NS_XINCLUDE) {
            walk(db, c, dir, depth, hosted, policy, sum)?;
        } else {
            sum.warnings.push(format!(
                "{domain}: skipped <{} xmlns='{}'>",
                c.name(),
                c.ns()
            ));
        }
    }
    Ok(())
}

/// Base64 that may have been encoded twice (ejabberd exports its stored base64 text
/// base64-encoded again): `want` is the length the raw value must have.
fn scram_value(text: &str, want: usize) -> Option<(Vec<u8>, bool)> {
    let once = B64.decode(text.trim()).ok()?;
    if once.len() == want {
        return Some((once, false));
    }
    let twice = B64.decode(&once).ok()?;
    (twice.len() == want).then_some((twice, true))
}

/// One `<scram-credentials/>`: (salt, iterations, keys).
fn scram_keys(el: &Element, hash_len: usize) -> Option<(Vec<u8>, u32, ScramKeys)> {
    let text = |n: &str| el.get_child(n, NS_SCRAM).map(|c| c.text());
    let iterations = text("iter-count")?.trim().parse().ok()?;
    let (stored_key, double) = scram_value(&text("stored-key")?, hash_len)?;
    let (server_key, _) = scram_value(&text("server-key")?, hash_len)?;
    let salt = B64.decode(text("salt")?.trim()).ok()?;
    let salt = if double {
        B64.decode(&salt).unwrap_or(salt)
    } else {
        salt
    };
    Some((
        salt,
        iterations,
        ScramKeys {
            stored_key,
            server_key,
        },
    ))
}

fn credentials(
    el: &Element,
    who: &str,
    policy: PasswordPolicy,
    warnings: &mut Vec<String>,
) -> Credentials {
    let password = el.attr("password").filter(|p| !p.is_empty());
    let mut sha1 = None;
    let mut sha256 = None;
    for s in el
        .children()
        .filter(|c| c.is("scram-credentials", NS_SCRAM))
    {
        match s.attr("mechanism") {
            Some("SCRAM-SHA-1") => sha1 = scram_keys(s, 20),
            Some("SCRAM-SHA-256") => sha256 = scram_keys(s, 32),
            other => warnings.push(format!(
                "{who}: SCRAM mechanism {} is not supported; skipped",
                other.unwrap_or("(none)")
            )),
        }
    }
    let empty = ScramKeys {
        stored_key: Vec::new(),
        server_key: Vec::new(),
    };
    match (sha1, sha256) {
        // the keys as they were (the password, when given, kept as policy says)
        (Some(a), Some(b)) if a.0 == b.0 && a.1 == b.1 => Credentials {
            salt: a.0,
            iterations: a.1,
            sha1: a.2,
            sha256: b.2,
            plain: password.filter(|_| policy.keep_plain).map(str::to_string),
        },
        // a password makes complete keys
        _ if password.is_some() => Credentials::derive(
            password.unwrap_or_default(),
            policy.iterations,
            policy.keep_plain,
        ),
        (a, Some(b)) => {
            warnings.push(format!(
                "{who}: {}; SCRAM-SHA-1 logins fail until the password is set again",
                if a.is_some() {
                    "SCRAM-SHA-1 keys with another salt were dropped"
                } else {
                    "only SCRAM-SHA-256 keys"
                }
            ));
            Credentials {
                salt: b.0,
                iterations: b.1,
                sha1: empty,
                sha256: b.2,
                plain: None,
            }
        }
        (Some(a), None) => {
            warnings.push(format!(
                "{who}: only SCRAM-SHA-1 keys; SCRAM-SHA-256 and PLAIN logins fail until the password is set again"
            ));
            Credentials {
                salt: a.0,
                iterations: a.1,
                sha1: a.2,
                sha256: empty,
                plain: None,
            }
        }
        (None, None) => {
            warnings.push(format!(
                "{who}: no usable password or SCRAM keys; nobody can log in until `xmppd account passwd`"
            ));
            Credentials {
                salt: Vec::new(),
                iterations: policy.iterations,
                sha1: empty.clone(),
                sha256: empty,
                plain: None,
            }
        }
    }
}

fn roster_item(el: &Element) -> Option<Item> {
    let jid = xmpp_parsers::jid::BareJid::new(el.attr("jid")?).ok()?;
    Some(Item {
        jid: jid.to_string(),
        name: el
            .attr("name")
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        groups: el
            .children()
            .filter(|g| g.name() == "group")
            .map(|g| g.text())
            .filter(|g| !g.is_empty())
            .collect(),
        sub: Sub::parse(el.attr("subscription").unwrap_or("none"))?,
        ask: el.attr("ask") == Some("subscribe"),
        approved: matches!(el.attr("approved"), Some("true" | "1")),
    })
}

fn user(
    db: &dyn Backend,
    domain: &str,
    el: &Element,
    policy: PasswordPolicy,
    sum: &mut Summary,
) -> Result<(), PieError> {
    let Some(name) = el.attr("name") else {
        sum.warnings
            .push(format!("{domain}: a <user/> without name; skipped"));
        return Ok(());
    };
    let Some(user) = xmpp_parsers::jid::BareJid::new(&format!("{name}@{domain}"))
        .ok()
        .and_then(|j| j.node().map(|n| n.to_string()))
    else {
        sum.warnings.push(format!(
            "{domain}: '{name}' is not a valid user name; skipped"
        ));
        return Ok(());
    };
    let who = format!("{user}@{domain}");
    let creds = credentials(el, &who, policy, &mut sum.warnings);
    match db.create_account(domain, &user, &creds) {
        Ok(()) => {}
        Err(StorageError::Exists) => {
            sum.warnings.push(format!("{who} existed: updated"));
            db.set_credentials(domain, &user, &creds)
                .map_err(storage(&who))?;
        }
        Err(e) => return Err(storage(&who)(e)),
    }
    sum.accounts += 1;
    let mut blocked: Vec<String> = Vec::new();
    for c in el.children() {
        if c.is("scram-credentials", NS_SCRAM) {
            continue;
        } else if c.is("query", NS_ROSTER) {
            let mut ver = db.roster_load(domain, &user).map_err(storage(&who))?.ver;
            for i in c.children().filter(|i| i.name() == "item") {
                match roster_item(i) {
                    Some(item) => {
                        ver += 1;
                        db.roster_put(domain, &user, &item, ver)
                            .map_err(storage(&who))?;
                        sum.roster_items += 1;
                    }
                    None => sum
                        .warnings
                        .push(format!("{who}: roster item {} skipped", to_string(i))),
                }
            }
        } else if c.is("pending", NS_PENDING) {
            for p in c.children() {
                let from = p
                    .attr("from")
                    .and_then(|f| xmpp_parsers::jid::Jid::new(f).ok())
                    .map(|j| j.to_bare().to_string());
                match from {
                    Some(contact) if p.name() == "presence" => db
                        .pending_in(domain, &user, &contact, Some(&to_string(p)))
                        .map_err(storage(&who))?,
                    _ => sum
                        .warnings
                        .push(format!("{who}: pending request {} skipped", to_string(p))),
                }
            }
        } else if is_pie(c, "offline-messages") {
            for m in c.children() {
                if m.is("message", NS_CLIENT) {
                    db.offline_push(domain, &user, &to_string(m), usize::MAX)
                        .map_err(storage(&who))?;
                    sum.offline_messages += 1;
                } else {
                    sum.warnings
                        .push(format!("{who}: offline <{}/> skipped", m.name()));
                }
            }
        } else if c.is("vCard", NS_VCARD) {
            db.document_set(domain, &user, "vcard-temp", &to_string(c))
                .map_err(storage(&who))?;
            sum.documents += 1;
        } else if c.is("query", NS_PRIVATE) {
            for p in c.children() {
                let key = format!("private:{}:{}", p.name(), p.ns());
                db.document_set(domain, &user, &key, &to_string(p))
                    .map_err(storage(&who))?;
                sum.documents += 1;
            }
        } else if c.is("blocklist", NS_BLOCKING) {
            blocked.extend(
                c.children()
                    .filter_map(|i| i.attr("jid"))
                    .map(str::to_string),
            );
        } else if c.is("query", NS_PRIVACY) {
            for l in c.children().filter(|l| l.name() == "list") {
                if l.attr("name") == Some(EJABBERD_BLOCKLIST) {
                    blocked.extend(
                        l.children()
                            .filter(|i| {
                                i.attr("type") == Some("jid") && i.attr("action") == Some("deny")
                            })
                            .filter_map(|i| i.attr("value"))
                            .map(str::to_string),
                    );
                } else {
                    sum.warnings.push(format!(
                        "{who}: privacy list '{}' skipped (privacy lists are not supported)",
                        l.attr("name").unwrap_or("")
                    ));
                }
            }
        } else {
            sum.warnings
                .push(format!("{who}: skipped <{} xmlns='{}'>", c.name(), c.ns()));
        }
    }
    if !blocked.is_empty() {
        let mut all = db.blocklist_get(domain, &user).map_err(storage(&who))?;
        all.extend(blocked);
        all.sort();
        all.dedup();
        sum.blocked += all.len();
        db.blocklist_set(domain, &user, &all)
            .map_err(storage(&who))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

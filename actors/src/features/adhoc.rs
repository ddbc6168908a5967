//! Ad-hoc commands (XEP-0050) with the service-administration commands of XEP-0133:
//! add user, delete user, change a user's password, the online users (list and
//! number), an announcement to every online session.
//!
//! The server (each hosted domain's JID) advertises
//! `http://jabber.org/protocol/commands` and lists in disco#items of that node the
//! commands the asker may run: all of them for an administrator of the server
//! (`admins`), none for anyone else. A command administers the accounts of the domain
//! it is addressed to. It is executed by the administrator's account actor (it holds
//! the administrator's command sessions, [`adhoc::Sessions`]): reached from the
//! session for the user's own domain, through the registry for another hosted domain
//! (the answer is routed back). Anyone else gets `forbidden`. The forms and decisions
//! are [`xmppd_proto::xep::adhoc`]; this file carries out the tasks:
//!
//! - add user / change password: the SCRAM keys derived among the bounded key
//!   derivations, then the account created (`conflict` when it exists) or its keys
//!   replaced (`item-not-found` when there is no such account);
//! - delete user: each account's own actor removes it the way XEP-0077 `<remove/>`
//!   does ([`ToAccount::Remove`]): subscriptions cancelled, its sessions closed;
//! - online users and announcement: the registry's session table.

use super::{Caller, Entity, Env, Feature, IqAnswer, IqCall, IqHandler, IqRoute, Types, Who};
use crate::account::Account;
use crate::signals::to_registry::{ForAccount, ListSessions};
use crate::signals::{Signal, ToAccount};
use crate::storage::StorageError;
use actix::prelude::*;
use minidom::Element;
use std::time::Instant;
use xmpp_parsers::jid::BareJid;
use xmppd_proto::ns;
use xmppd_proto::stanza::{self, ErrorCondition};
use xmppd_proto::xep::adhoc::{self, CmdError, Command, Outcome, Step, Task};

pub const FEATURE: Feature = Feature {
    name: "adhoc",
    enabled: super::always,
    disco: &[(Entity::Server, ns::COMMANDS)],
    iq: &[
        // the domain's own users (and, handed over by the registry, those of the other
        // hosted domains): run by their account actor, which checks the rights
        IqRoute {
            to: Entity::Server,
            ns: ns::COMMANDS,
            element: "command",
            types: Types::Set,
            from: Who::Owner,
            handler: IqHandler::Account(execute),
        },
        // anyone else (other servers, components): not an administrator here
        IqRoute {
            to: Entity::Server,
            ns: ns::COMMANDS,
            element: "command",
            types: Types::Set,
            from: Who::Anyone,
            handler: IqHandler::Pure(refuse),
        },
    ],
    stream: None,
    taps: &[],
};

fn refuse(_: &IqCall<'_>) -> IqAnswer {
    Err(super::IqError {
        cond: ErrorCondition::Forbidden,
        text: Some("only the server's administrators may run these commands"),
    })
}

/// Whether `iq` is an administration command (what the registry hands to the sender's
/// account actor when it comes from a user of another hosted domain).
pub fn is_command(iq: &Element) -> bool {
    iq.name() == "iq"
        && iq.attr("type") == Some("set")
        && super::single_payload(iq).is_some_and(|p| p.is("command", ns::COMMANDS))
}

/// Whether the sender of `iq` may run the commands of the (hosted) domain at hand: an
/// administrator of the server.
pub fn may_run(env: &Env<'_>, iq: &Element) -> bool {
    let (Some(_), Some(from)) = (env.domain, iq.attr("from")) else {
        return false;
    };
    let Ok(from) = BareJid::new(from.split('/').next().unwrap_or_default()) else {
        return false;
    };
    let Some(user) = from.node() else {
        return false;
    };
    env.settings.domain(from.domain().as_str()).is_some()
        && env.settings.is_admin(user.as_str(), from.domain().as_str())
}

/// disco#items of the commands node, for the disco feature; `None` for other nodes.
pub fn disco_items(c: &IqCall<'_>) -> Option<IqAnswer> {
    if c.payload.attr("node") != Some(ns::COMMANDS) {
        return None;
    }
    let domain = c.env.domain?;
    Some(Ok(Some(adhoc::items(&domain.name, may_run(c.env, c.iq)))))
}

/// disco#info of a command's node (for administrators; `item-not-found` otherwise).
pub fn disco_info(c: &IqCall<'_>) -> Option<IqAnswer> {
    let node = c.payload.attr("node")?;
    let info = adhoc::node_info(node)?;
    Some(if may_run(c.env, c.iq) {
        Ok(Some(info))
    } else {
        Err(ErrorCondition::ItemNotFound.into())
    })
}

fn fail(acc: &Account, caller: &Caller, iq: &Element, e: &CmdError) {
    if let Some(r) = adhoc::error(iq, e) {
        acc.reply_to_caller(caller, r);
    }
}

/// A `<command/>` from one of the account's own resources: addressed to its own domain
/// (`Caller::Own`, from its session) or to another hosted domain (`Caller::Other`, the
/// registry handed it here).
fn execute(acc: &mut Account, caller: Caller, iq: Element, ctx: &mut Context<Account>) {
    let (user, home) = acc.user_and_domain();
    let (resource, domain) = match &caller {
        Caller::Own(r) => (r.clone(), home.clone()),
        Caller::Other(sig) => (
            sig.from()
                .resource()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            sig.to().domain().to_string(),
        ),
    };
    let settings = acc.server().settings.get();
    if !settings.is_admin(&user, &home) || settings.domain(&domain).is_none() {
        slog::warn!(acc.server().log, # "XMPPI", "ad-hoc command refused: not an administrator"; "user" => &user, "domain" => &home);
        return fail(acc, &caller, &iq, &adhoc::forbidden());
    }
    let Some(cmd) = super::single_payload(&iq) else {
        return;
    };
    let req = match adhoc::parse(cmd) {
        Ok(r) => r,
        Err(e) => return fail(acc, &caller, &iq, &e),
    };
    let requester = format!("{user}@{home}/{resource}");
    let step = adhoc::decide(
        acc.commands(),
        &requester,
        &domain,
        req,
        Instant::now(),
        session_id,
    );
    match step {
        Step::Reply(payload) => acc.reply_to_caller(&caller, stanza::iq_result(&iq, Some(payload))),
        Step::Fail(e) => fail(acc, &caller, &iq, &e),
        Step::Run {
            task,
            command,
            sessionid,
        } => {
            slog::info!(acc.server().log, "administration command"; "by" => &requester, "domain" => &domain, "command" => command.node());
            run(acc, caller, domain, iq, task, command, sessionid, ctx)
        }
    }
}

fn session_id() -> String {
    use rand::Rng;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Carry out a task, then answer the requester. Spawned: the account goes on with its
/// own work meanwhile. A delete-user naming the administrator's own account answers
/// first and removes that account last (removing it closes the sessions the answer
/// goes to).
#[allow(clippy::too_many_arguments)]
fn run(
    acc: &mut Account,
    caller: Caller,
    domain: String,
    iq: Element,
    mut task: Task,
    command: Command,
    sessionid: String,
    ctx: &mut Context<Account>,
) {
    let server = acc.server().clone();
    let (user, home) = acc.user_and_domain();
    let mut remove_self = None;
    if let Task::DeleteUsers { users } = &mut task
        && home.eq_ignore_ascii_case(&domain)
        && let Some(i) = users.iter().position(|u| *u == user)
    {
        users.remove(i);
        remove_self = BareJid::new(&format!("{user}@{home}")).ok();
    }
    let own = remove_self.as_ref().map(|b| b.to_string());
    async move { outcome(server, domain, task, own).await }
        .into_actor(acc)
        .map(move |r, act, _| {
            act.commands().task_ended();
            let reply = match r {
                Ok(o) => Some(stanza::iq_result(
                    &iq,
                    Some(adhoc::completed(command, &sessionid, o)),
                )),
                Err(e) => adhoc::error(&iq, &e),
            };
            if let Some(r) = reply {
                act.reply_to_caller(&caller, r);
            }
            if let Some(bare) = remove_self {
                remove_own_account(act, bare);
            }
        })
        .spawn(ctx);
}

/// The administrator's own account, after the answer: removed the way any other is
/// (its sessions, the answer's included, then close); the result is logged.
fn remove_own_account(acc: &Account, bare: BareJid) {
    let server = acc.server().clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let jid = bare.to_string();
    server.registry.for_account.do_send(ForAccount {
        bare,
        msg: ToAccount::Remove { done: tx },
    });
    actix::spawn(async move {
        match rx.await {
            Ok(Ok(())) => {
                slog::info!(server.log, "administrator's own account deleted"; "user" => &jid)
            }
            Ok(Err(e)) => {
                slog::error!(server.log, "account not removed"; "user" => &jid, "error" => %e)
            }
            Err(_) => {
                slog::error!(server.log, "account not removed: its actor ended"; "user" => &jid)
            }
        }
    });
}

fn storage_failed(e: StorageError) -> CmdError {
    let (cond, text) = match e {
        StorageError::Exists => (ErrorCondition::Conflict, "the account exists already"),
        StorageError::NotFound => (ErrorCondition::ItemNotFound, "no such account"),
        _ => (
            ErrorCondition::InternalServerError,
            "the storage failed: see the server's log",
        ),
    };
    CmdError {
        cond,
        specific: None,
        text: text.into(),
    }
}

fn internal(text: &str) -> CmdError {
    CmdError {
        cond: ErrorCondition::InternalServerError,
        specific: None,
        text: text.into(),
    }
}

/// Carry out `task` at `domain`; `own` is the requester's account when a delete-user
/// named it (removed after the answer, see [`run`]).
async fn outcome(
    server: crate::context::Ctx,
    domain: String,
    task: Task,
    own: Option<String>,
) -> Result<Outcome, CmdError> {
    let note = |text: String| Outcome::Note { warn: false, text };
    match task {
        Task::AddUser { user, password } => {
            set_password(&server, &domain, &user, password, true)
                .await
                .map_err(storage_failed)?;
            slog::info!(server.log, "account added by an administrator"; "user" => &user, "domain" => &domain);
            Ok(note(format!("{user}@{domain} was added")))
        }
        Task::ChangePassword { user, password } => {
            set_password(&server, &domain, &user, password, false)
                .await
                .map_err(storage_failed)?;
            slog::info!(server.log, "password changed by an administrator"; "user" => &user, "domain" => &domain);
            Ok(note(format!("the password of {user}@{domain} was changed")))
        }
        Task::DeleteUsers { users } => {
            // every account is tried: the note says what became of each
            let (mut gone, mut missing, mut failed) = (Vec::new(), Vec::new(), Vec::new());
            for u in users {
                let jid = format!("{u}@{domain}");
                let Ok(bare) = BareJid::new(&jid) else {
                    missing.push(jid);
                    continue;
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                server.registry.for_account.do_send(ForAccount {
                    bare,
                    msg: ToAccount::Remove { done: tx },
                });
                match rx.await {
                    Ok(Ok(())) => gone.push(jid),
                    Ok(Err(StorageError::NotFound)) => missing.push(jid),
                    Ok(Err(e)) => {
                        slog::error!(server.log, "account not removed"; "user" => &jid, "error" => %e);
                        failed.push(jid);
                    }
                    Err(_) => {
                        slog::error!(server.log, "account not removed: its actor ended"; "user" => &jid);
                        failed.push(jid);
                    }
                }
            }
            Ok(adhoc::deleted_note(
                &gone,
                &missing,
                &failed,
                own.as_deref(),
            ))
        }
        Task::ListOnline { max } => Ok(Outcome::Online(adhoc::online_users(
            &sessions(&server).await?,
            &domain,
            max,
        ))),
        Task::CountOnline => Ok(Outcome::Count(
            adhoc::online_users(&sessions(&server).await?, &domain, None).len(),
        )),
        Task::Announce { subject, body } => {
            let mut n = 0usize;
            let all = sessions(&server).await?;
            for jid in adhoc::domain_sessions(&all, &domain) {
                let m = adhoc::announcement(&domain, jid, subject.as_deref(), &body);
                if let Some(sig) = Signal::from_stanza(m) {
                    server.registry.route(sig);
                    n += 1;
                }
            }
            slog::info!(server.log, "announcement sent"; "domain" => &domain, "sessions" => n);
            Ok(note(format!("sent to {n} online sessions")))
        }
    }
}

/// The full JIDs of every bound session (the registry's table).
async fn sessions(server: &crate::context::Ctx) -> Result<Vec<String>, CmdError> {
    let list = server
        .registry
        .list_sessions
        .send(ListSessions)
        .await
        .map_err(|_| internal("the registry did not answer"))?;
    Ok(list.into_iter().map(|s| s.jid).collect())
}

/// New SCRAM keys for `password` (the configured iterations and format), then the
/// account created (`create`) or its keys replaced ([`crate::storage::Storage::store_password`]).
async fn set_password(
    server: &crate::context::Ctx,
    domain: &str,
    user: &str,
    password: String,
    create: bool,
) -> Result<(), StorageError> {
    let settings = server.settings.get();
    server
        .storage
        .store_password(
            domain.to_string(),
            user.to_string(),
            password,
            &settings.auth,
            create,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::super::{Entity, Env, Who, answer, lookup};
    use super::*;
    use xmppd_proto::config::{DomainSettings, Settings};

    fn settings() -> Settings {
        Settings {
            domains: vec![
                DomainSettings::named("example.org"),
                DomainSettings::named("other.org"),
            ],
            admins: vec!["Boss@example.org".into()],
            ..Settings::default()
        }
    }

    fn iq(from: &str, to: &str, payload: &str) -> Element {
        format!(
            "<iq xmlns='jabber:client' type='get' id='1' from='{from}' to='{to}'>{payload}</iq>"
        )
        .parse()
        .expect("xml")
    }

    #[test]
    fn the_commands_are_listed_to_the_domains_administrators_only() {
        let s = settings();
        let env = Env::new(&s, "example.org");
        let q = format!(
            "<query xmlns='{}' node='{}'/>",
            ns::DISCO_ITEMS,
            ns::COMMANDS
        );
        let listed = |from: &str, env: &Env<'_>, to: &str| {
            let r = answer(env, Entity::Server, Who::Anyone, &iq(from, to, &q)).expect("answered");
            assert_eq!(r.attr("type"), Some("result"), "{r:?}");
            r.children().flat_map(|q| q.children()).count()
        };
        assert_eq!(
            listed("boss@example.org/r", &env, "example.org"),
            Command::ALL.len()
        );
        assert_eq!(listed("bob@example.org/r", &env, "example.org"), 0);
        // the same name at another server is nobody here; the administrator sees the
        // commands at every hosted domain, none at a domain not hosted
        assert_eq!(listed("boss@elsewhere.net/r", &env, "example.org"), 0);
        let other = Env::new(&s, "other.org");
        assert_eq!(
            listed("boss@example.org/r", &other, "other.org"),
            Command::ALL.len()
        );
        let q_not_hosted = Env::new(&s, "elsewhere.net");
        let r = answer(
            &q_not_hosted,
            Entity::Server,
            Who::Anyone,
            &iq("boss@example.org/r", "elsewhere.net", &q),
        )
        .expect("answered");
        assert_eq!(r.attr("type"), Some("error"), "no such node there");
        // only sets in the commands namespace are handed to the sender's account
        let mut set = iq(
            "boss@example.org/r",
            "other.org",
            "<command xmlns='http://jabber.org/protocol/commands' node='x'/>",
        );
        assert!(!is_command(&set), "a get");
        xmppd_proto::stanza::set_attr(&mut set, "type", "set");
        assert!(is_command(&set));
        assert!(!is_command(&iq(
            "a@b/c",
            "b",
            "<ping xmlns='urn:xmpp:ping'/>"
        )));
        // a command node's disco#info: for the administrator
        let info = format!(
            "<query xmlns='{}' node='{}'/>",
            ns::DISCO_INFO,
            Command::AddUser.node()
        );
        let r = answer(
            &env,
            Entity::Server,
            Who::Anyone,
            &iq("boss@example.org/r", "example.org", &info),
        )
        .expect("answered");
        assert_eq!(r.attr("type"), Some("result"));
        let r = answer(
            &env,
            Entity::Server,
            Who::Anyone,
            &iq("bob@example.org/r", "example.org", &info),
        )
        .expect("answered");
        assert_eq!(r.attr("type"), Some("error"));
        assert!(super::super::advertised(&env, Entity::Server).contains(&ns::COMMANDS));
    }

    #[test]
    fn own_users_reach_their_account_actor_others_are_refused() {
        let s = settings();
        let env = Env::new(&s, "example.org");
        let mut cmd = iq(
            "x@elsewhere.net/r",
            "example.org",
            &format!(
                "<command xmlns='{}' node='{}'/>",
                ns::COMMANDS,
                Command::AddUser.node()
            ),
        );
        xmppd_proto::stanza::set_attr(&mut cmd, "type", "set");
        let own = lookup(&env, Entity::Server, Who::Owner, &cmd).expect("route");
        assert!(matches!(own.handler, IqHandler::Account(_)));
        let r = answer(&env, Entity::Server, Who::Anyone, &cmd).expect("answered");
        assert!(
            r.get_child("error", ns::CLIENT)
                .is_some_and(|e| e.has_child("forbidden", ns::STANZAS)),
            "{r:?}"
        );
    }
}

//! XEP-0050 ad-hoc commands carrying the XEP-0133 service-administration commands,
//! without actors: the commands and their XEP-0004 forms, reading a `<command/>`
//! request, the command sessions of one administrator (bounded, expiring), and the
//! decision on each request ([`decide`]): a form to answer with, a task for the server
//! to carry out, or an error with XEP-0050's specific condition.
//!
//! Scope (XEP-0133): the server's administrators (`admins` in the settings) may run the
//! commands at every hosted domain, and a command administers the accounts of the
//! domain it is addressed to; an account JID of another domain in a form is
//! `bad-request`.

mod forms;
pub use forms::{Outcome, announcement, completed, deleted_note, items, node_info};
use forms::{executing, status};

use crate::ns;
use crate::stanza::{ErrorCondition, error_reply};
use crate::xep::register;
use minidom::Element;
use std::time::{Duration, Instant};
use xmpp_parsers::jid::BareJid;

/// Command sessions one administrator may have open at once; opening one more closes
/// the oldest (an abandoned session never locks the administrator out).
pub const MAX_SESSIONS: usize = 8;

/// Tasks of one administrator running at once (key derivations, deletions); more are
/// refused with `resource-constraint` until one ends, so pipelined requests cannot
/// queue unbounded work.
pub const MAX_RUNNING: usize = 4;

/// Ended command sessions remembered, so that reusing one answers `session-expired`
/// rather than `bad-sessionid`.
const REMEMBER_ENDED: usize = 32;

/// How long a command session waits for its form (then `session-expired`).
pub const SESSION_TTL: Duration = Duration::from_secs(600);

/// Accounts one delete-user command may name.
pub const MAX_ACCOUNTS: usize = 100;

/// The XEP-0133 commands the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    AddUser,
    DeleteUser,
    ChangePassword,
    OnlineUsersList,
    OnlineUsersNum,
    Announce,
}

impl Command {
    /// Every command, in the order disco#items lists them.
    pub const ALL: [Command; 6] = [
        Command::AddUser,
        Command::DeleteUser,
        Command::ChangePassword,
        Command::OnlineUsersList,
        Command::OnlineUsersNum,
        Command::Announce,
    ];

    /// The command's node (XEP-0133 §4).
    pub fn node(self) -> &'static str {
        match self {
            Command::AddUser => "http://jabber.org/protocol/admin#add-user",
            Command::DeleteUser => "http://jabber.org/protocol/admin#delete-user",
            Command::ChangePassword => "http://jabber.org/protocol/admin#change-user-password",
            Command::OnlineUsersList => "http://jabber.org/protocol/admin#get-online-users-list",
            Command::OnlineUsersNum => "http://jabber.org/protocol/admin#get-online-users-num",
            Command::Announce => "http://jabber.org/protocol/admin#announce",
        }
    }

    /// The name disco#items shows.
    pub fn name(self) -> &'static str {
        match self {
            Command::AddUser => "Add a User",
            Command::DeleteUser => "Delete a User",
            Command::ChangePassword => "Change User Password",
            Command::OnlineUsersList => "Get List of Online Users",
            Command::OnlineUsersNum => "Get Number of Online Users",
            Command::Announce => "Send Announcement to Online Users",
        }
    }

    pub fn from_node(node: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.node() == node)
    }

    /// The task of a command that has no form: it completes at once.
    fn immediate(self) -> Option<Task> {
        (self == Command::OnlineUsersNum).then_some(Task::CountOnline)
    }

    fn form(self) -> Element {
        forms::command_form(self)
    }
}

/// XEP-0050 §4.4 actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Execute,
    Next,
    Prev,
    Complete,
    Cancel,
}

/// A `<command/>` request, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub node: String,
    pub action: Action,
    pub sessionid: Option<String>,
    /// The submitted form (`<x type='submit'/>`), if any.
    pub form: Option<Element>,
}

/// An error with XEP-0050's application-specific condition (§6) and a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdError {
    pub cond: ErrorCondition,
    /// `bad-action`, `bad-sessionid`, `bad-payload`, `session-expired`...
    pub specific: Option<&'static str>,
    pub text: String,
}

fn err(cond: ErrorCondition, specific: Option<&'static str>, text: impl Into<String>) -> CmdError {
    CmdError {
        cond,
        specific,
        text: text.into(),
    }
}

fn bad_payload(text: impl Into<String>) -> CmdError {
    err(ErrorCondition::BadRequest, Some("bad-payload"), text)
}

/// The refusal of a requester who is not an administrator (XEP-0050 §6: `forbidden`).
pub fn forbidden() -> CmdError {
    err(
        ErrorCondition::Forbidden,
        None,
        "only the server's administrators may run these commands",
    )
}

/// The error reply to `iq` for `e`.
pub fn error(iq: &Element, e: &CmdError) -> Option<Element> {
    let mut r = error_reply(iq, e.cond, Some(&e.text))?;
    if let (Some(s), Some(el)) = (e.specific, r.get_child_mut("error", ns::CLIENT)) {
        el.append_child(Element::bare(s, ns::COMMANDS));
    }
    Some(r)
}

/// Read a `<command xmlns='http://jabber.org/protocol/commands'/>` request.
pub fn parse(cmd: &Element) -> Result<Request, CmdError> {
    let node = cmd
        .attr("node")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad_payload("the command has no node"))?;
    let action = match cmd.attr("action") {
        None | Some("execute") => Action::Execute,
        Some("next") => Action::Next,
        Some("prev") => Action::Prev,
        Some("complete") => Action::Complete,
        Some("cancel") => Action::Cancel,
        Some(_) => {
            return Err(err(
                ErrorCondition::BadRequest,
                Some("malformed-action"),
                "unknown action",
            ));
        }
    };
    let form = cmd
        .get_child("x", ns::DATA_FORMS)
        .filter(|x| x.attr("type") == Some("submit"))
        .cloned();
    Ok(Request {
        node: node.to_string(),
        action,
        // an empty sessionid is none (some clients send one on the first request)
        sessionid: cmd
            .attr("sessionid")
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        form,
    })
}

/// What a command does once its form is in (or at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Create the account `user` (nodeprepped) of the domain.
    AddUser {
        user: String,
        password: String,
    },
    /// Remove these accounts (nodeprepped names) the way XEP-0077 `<remove/>` does.
    DeleteUsers {
        users: Vec<String>,
    },
    ChangePassword {
        user: String,
        password: String,
    },
    /// The online users of the domain, at most `max` of them.
    ListOnline {
        max: Option<usize>,
    },
    CountOnline,
    /// A message to every online session of the domain.
    Announce {
        subject: Option<String>,
        body: String,
    },
}

/// One open command session.
#[derive(Debug, Clone)]
struct Open {
    id: String,
    command: Command,
    /// The full JID that started it, and the domain it was addressed to: only the
    /// same requester at the same domain may go on with it.
    requester: String,
    domain: String,
    since: Instant,
}

/// The command sessions of one administrator: those open, the ids of the last ones
/// that ended (completed, canceled, expired or closed for a new one), and the number
/// of tasks running.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Vec<Open>,
    ended: std::collections::VecDeque<String>,
    running: usize,
}

impl Sessions {
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Tasks handed out by [`decide`] (`Step::Run`) and not yet [`Sessions::task_ended`].
    pub fn running(&self) -> usize {
        self.running
    }

    /// A task [`decide`] handed out has ended (answered or failed).
    pub fn task_ended(&mut self) {
        self.running = self.running.saturating_sub(1);
    }

    fn end(&mut self, i: usize) {
        let o = self.open.remove(i);
        self.remember(o.id);
    }

    fn remember(&mut self, id: String) {
        if self.ended.len() >= REMEMBER_ENDED {
            self.ended.pop_front();
        }
        self.ended.push_back(id);
    }

    /// Drop the sessions past their time to live.
    fn prune(&mut self, now: Instant) {
        let (keep, gone): (Vec<Open>, Vec<Open>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|o| now.duration_since(o.since) < SESSION_TTL);
        self.open = keep;
        for o in gone {
            self.remember(o.id);
        }
    }

    /// A task may start (below [`MAX_RUNNING`]); counted as running if so.
    fn start_task(&mut self) -> Result<(), CmdError> {
        if self.running >= MAX_RUNNING {
            return Err(err(
                ErrorCondition::ResourceConstraint,
                None,
                "too many commands are running: wait for their answers",
            ));
        }
        self.running += 1;
        Ok(())
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The iq result's payload (a form to fill in, or "canceled").
    Reply(Element),
    /// Carry this out, then answer with [`completed`] (or an error).
    Run {
        task: Task,
        command: Command,
        sessionid: String,
    },
    Fail(CmdError),
}

/// Decide on an administrator's request addressed to `domain`. `new_id` makes a fresh
/// session id when one is needed.
pub fn decide(
    sessions: &mut Sessions,
    requester: &str,
    domain: &str,
    req: Request,
    now: Instant,
    new_id: impl FnOnce() -> String,
) -> Step {
    let Some(command) = Command::from_node(&req.node) else {
        return Step::Fail(err(ErrorCondition::ItemNotFound, None, "no such command"));
    };
    let Some(id) = req.sessionid else {
        if req.action != Action::Execute {
            return Step::Fail(err(
                ErrorCondition::BadRequest,
                Some("bad-sessionid"),
                "this action needs the sessionid of a running command",
            ));
        }
        if let Some(task) = command.immediate() {
            if let Err(e) = sessions.start_task() {
                return Step::Fail(e);
            }
            return Step::Run {
                task,
                command,
                sessionid: new_id(),
            };
        }
        let form = command.form();
        sessions.prune(now);
        if sessions.open.len() >= MAX_SESSIONS {
            // the oldest was most likely abandoned
            sessions.end(0);
        }
        let id = new_id();
        sessions.open.push(Open {
            id: id.clone(),
            command,
            requester: requester.to_string(),
            domain: domain.to_ascii_lowercase(),
            since: now,
        });
        return Step::Reply(executing(command, &id, form));
    };
    let Some(i) = sessions.open.iter().position(|o| {
        o.id == id
            && o.requester == requester
            && o.command == command
            && o.domain.eq_ignore_ascii_case(domain)
    }) else {
        if sessions.ended.contains(&id) {
            return Step::Fail(expired());
        }
        return Step::Fail(err(
            ErrorCondition::BadRequest,
            Some("bad-sessionid"),
            "no such command session",
        ));
    };
    if now.duration_since(sessions.open[i].since) >= SESSION_TTL {
        sessions.end(i);
        return Step::Fail(expired());
    }
    match req.action {
        Action::Cancel => {
            sessions.end(i);
            Step::Reply(status(command, &id, "canceled"))
        }
        // one stage: there is no next or previous one
        Action::Next | Action::Prev => Step::Fail(err(
            ErrorCondition::BadRequest,
            Some("bad-action"),
            "this command has one stage: complete it",
        )),
        Action::Execute | Action::Complete => {
            let Some(x) = req.form else {
                return Step::Fail(bad_payload("submit the command's form"));
            };
            match task(command, &x, domain) {
                Ok(task) => {
                    // refused while too many run: the session stays open to retry
                    if let Err(e) = sessions.start_task() {
                        return Step::Fail(e);
                    }
                    sessions.end(i);
                    Step::Run {
                        task,
                        command,
                        sessionid: id,
                    }
                }
                // the session stays open: the form may be sent again, corrected
                Err(e) => Step::Fail(e),
            }
        }
    }
}

/// A session that completed, was canceled or expired (XEP-0050 §6).
fn expired() -> CmdError {
    err(
        ErrorCondition::NotAllowed,
        Some("session-expired"),
        "the command session expired or ended",
    )
}

/// The values of a submitted form's fields, by `var`; a `FORM_TYPE` other than
/// XEP-0133's is refused.
fn values(x: &Element) -> Result<Vec<(String, Vec<String>)>, CmdError> {
    let mut out = Vec::new();
    for f in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let var = f.attr("var").unwrap_or_default().to_string();
        let vals: Vec<String> = f
            .children()
            .filter(|v| v.is("value", ns::DATA_FORMS))
            .map(|v| v.text())
            .collect();
        if var == "FORM_TYPE" && vals.first().is_some_and(|v| v != ns::ADMIN) {
            return Err(bad_payload(format!("FORM_TYPE must be {}", ns::ADMIN)));
        }
        out.push((var, vals));
    }
    Ok(out)
}

fn one<'a>(v: &'a [(String, Vec<String>)], var: &str) -> Option<&'a str> {
    v.iter()
        .find(|(n, _)| n == var)
        .and_then(|(_, vals)| vals.first())
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn many<'a>(v: &'a [(String, Vec<String>)], var: &str) -> Vec<&'a str> {
    v.iter()
        .filter(|(n, _)| n == var)
        .flat_map(|(_, vals)| vals.iter())
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// The user name of an account JID of `domain` (nodeprepped).
fn account(jid: &str, domain: &str) -> Result<String, CmdError> {
    let bare = BareJid::new(jid.trim()).map_err(|_| {
        err(
            ErrorCondition::JidMalformed,
            None,
            format!("{jid}: not a JID"),
        )
    })?;
    let Some(node) = bare.node() else {
        return Err(bad_payload(format!("{jid}: not an account JID")));
    };
    if !bare.domain().as_str().eq_ignore_ascii_case(domain) {
        return Err(bad_payload(format!(
            "{jid}: only accounts of {domain} are administered here"
        )));
    }
    Ok(node.to_string())
}

/// The password fields of add-user and change-password: non-blank, and (add-user)
/// typed twice alike.
fn password(v: &[(String, Vec<String>)], verify: bool) -> Result<String, CmdError> {
    let Some(p) = one(v, "password") else {
        return Err(bad_payload("a password is required"));
    };
    if verify && one(v, "password-verify").is_some_and(|r| r != p) {
        return Err(bad_payload("the two passwords differ"));
    }
    Ok(p.to_string())
}

/// Read a submitted form into the task it asks for.
pub fn task(command: Command, x: &Element, domain: &str) -> Result<Task, CmdError> {
    let v = values(x)?;
    let required =
        |var: &str| one(&v, var).ok_or_else(|| bad_payload(format!("the field {var} is required")));
    match command {
        Command::AddUser => {
            let user = account(required("accountjid")?, domain)?;
            let password = password(&v, true)?;
            // the rules of in-band registration: a valid, unreserved name
            let s = register::signup(register::Fields {
                username: Some(user),
                password: Some(password),
            })
            .map_err(|r| err(r.cond, None, r.text))?;
            Ok(Task::AddUser {
                user: s.username,
                password: s.password,
            })
        }
        Command::DeleteUser => {
            let jids = many(&v, "accountjids");
            if jids.is_empty() {
                return Err(bad_payload("the field accountjids is required"));
            }
            if jids.len() > MAX_ACCOUNTS {
                return Err(bad_payload(format!(
                    "at most {MAX_ACCOUNTS} accounts at once"
                )));
            }
            let mut users = Vec::new();
            for j in jids {
                let u = account(j, domain)?;
                if !users.contains(&u) {
                    users.push(u);
                }
            }
            Ok(Task::DeleteUsers { users })
        }
        Command::ChangePassword => Ok(Task::ChangePassword {
            user: account(required("accountjid")?, domain)?,
            password: password(&v, false)?,
        }),
        Command::OnlineUsersList => {
            let max = match one(&v, "max_items") {
                None | Some("none") => None,
                Some(n) => Some(
                    n.trim()
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad_payload("max_items is a number or none"))?,
                ),
            };
            Ok(Task::ListOnline { max })
        }
        Command::OnlineUsersNum => Ok(Task::CountOnline),
        Command::Announce => Ok(Task::Announce {
            subject: one(&v, "subject").map(str::to_string),
            body: {
                let lines = v
                    .iter()
                    .find(|(n, _)| n == "announcement")
                    .map(|(_, vals)| vals.join("\n"))
                    .unwrap_or_default();
                if lines.trim().is_empty() {
                    return Err(bad_payload("the field announcement is required"));
                }
                lines
            },
        }),
    }
}

/// The sessions (full JIDs) of users of `domain` among `sessions`: the one filter of
/// the online-users list, their number and the announcement.
pub fn domain_sessions<'a>(
    sessions: &'a [String],
    domain: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    sessions.iter().map(String::as_str).filter(move |j| {
        j.split_once('/').is_some_and(|(bare, _)| {
            bare.rsplit_once('@')
                .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain))
        })
    })
}

/// The bare JIDs of the online users of `domain` among `sessions` (full JIDs), once
/// each, sorted; at most `max`.
pub fn online_users(sessions: &[String], domain: &str, max: Option<usize>) -> Vec<String> {
    let mut users: Vec<String> = domain_sessions(sessions, domain)
        .filter_map(|j| j.split_once('/').map(|(bare, _)| bare.to_string()))
        .collect();
    users.sort();
    users.dedup();
    if let Some(m) = max {
        users.truncate(m);
    }
    users
}

#[cfg(test)]
mod tests;

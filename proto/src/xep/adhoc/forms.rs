//! The XML of the administration commands: the forms of their first stage, the
//! `<command/>` payloads (executing, canceled, completed with a note or values), the
//! announcement message, and the disco answers of the commands node.

use super::Command;
use crate::ns;
use crate::stanza::set_attr;
use minidom::Element;

/// The form of `command`'s first stage (none for a command that completes at once).
pub(super) fn command_form(command: Command) -> Element {
    let (title, instructions, fields): (&str, &str, Vec<Element>) = match command {
        Command::AddUser => (
            "Adding a User",
            "Fill out this form to add a user.",
            vec![
                field(
                    "jid-single",
                    "accountjid",
                    "The Jabber ID for the account to be added",
                    true,
                ),
                field(
                    "text-private",
                    "password",
                    "The password for this account",
                    true,
                ),
                field("text-private", "password-verify", "Retype password", true),
            ],
        ),
        Command::DeleteUser => (
            "Deleting a User",
            "Fill out this form to delete a user.",
            vec![field(
                "jid-multi",
                "accountjids",
                "The Jabber ID(s) to delete",
                true,
            )],
        ),
        Command::ChangePassword => (
            "Changing a User Password",
            "Fill out this form to change a user's password.",
            vec![
                field(
                    "jid-single",
                    "accountjid",
                    "The Jabber ID for this account",
                    true,
                ),
                field(
                    "text-private",
                    "password",
                    "The password for this account",
                    true,
                ),
            ],
        ),
        Command::OnlineUsersList => {
            let mut max = field(
                "list-single",
                "max_items",
                "Maximum number of items to report",
                false,
            );
            for v in ["25", "50", "75", "100", "150", "200", "none"] {
                let mut o = Element::bare("option", ns::DATA_FORMS);
                set_attr(&mut o, "label", v);
                o.append_child(text_el("value", v));
                max.append_child(o);
            }
            (
                "Getting List of Online Users",
                "How many users should the list show at most?",
                vec![max],
            )
        }
        Command::OnlineUsersNum => ("Getting the Number of Online Users", "", vec![]),
        Command::Announce => (
            "Making an Announcement",
            "Fill out this form to make an announcement to all active users of this service.",
            vec![
                field("text-single", "subject", "Subject", false),
                field("text-multi", "announcement", "Announcement", true),
            ],
        ),
    };
    let head = vec![
        text_el("title", title),
        text_el("instructions", instructions),
    ];
    form("form", head, fields)
}

pub(super) fn text_el(name: &str, text: &str) -> Element {
    let mut e = Element::bare(name, ns::DATA_FORMS);
    e.append_text(text);
    e
}

pub(super) fn field(ty: &str, var: &str, label: &str, required: bool) -> Element {
    let mut f = Element::bare("field", ns::DATA_FORMS);
    set_attr(&mut f, "type", ty);
    set_attr(&mut f, "var", var);
    set_attr(&mut f, "label", label);
    if required {
        f.append_child(Element::bare("required", ns::DATA_FORMS));
    }
    f
}

/// A data form of `ty`: `head` (title, instructions), the hidden `FORM_TYPE` of
/// XEP-0133, `fields`.
pub(super) fn form(ty: &str, head: Vec<Element>, fields: Vec<Element>) -> Element {
    let mut x = Element::bare("x", ns::DATA_FORMS);
    set_attr(&mut x, "type", ty);
    for h in head {
        x.append_child(h);
    }
    let mut ft = field("hidden", "FORM_TYPE", "", false);
    ft.attrs_mut().remove(&rxml::Namespace::NONE, "label");
    ft.append_child(text_el("value", ns::ADMIN));
    x.append_child(ft);
    for f in fields {
        x.append_child(f);
    }
    x
}

/// The `<x type='result'/>` of a command that reports values.
pub(super) fn result_form(fields: Vec<Element>) -> Element {
    form("result", Vec::new(), fields)
}

pub(super) fn command_el(command: Command, id: &str, status: &str) -> Element {
    let mut c = Element::bare("command", ns::COMMANDS);
    set_attr(&mut c, "node", command.node());
    set_attr(&mut c, "sessionid", id);
    set_attr(&mut c, "status", status);
    c
}

pub(super) fn status(command: Command, id: &str, s: &str) -> Element {
    command_el(command, id, s)
}

/// A stage waiting for its form: the one action is `complete`.
pub(super) fn executing(command: Command, id: &str, form: Element) -> Element {
    let mut c = command_el(command, id, "executing");
    let mut actions = Element::bare("actions", ns::COMMANDS);
    set_attr(&mut actions, "execute", "complete");
    actions.append_child(Element::bare("complete", ns::COMMANDS));
    c.append_child(actions);
    c.append_child(form);
    c
}

/// How a task ended, for the requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A note (`info`, or `warn` when part of it failed).
    Note {
        warn: bool,
        text: String,
    },
    /// The online users' JIDs.
    Online(Vec<String>),
    Count(usize),
}

/// The note of a delete-user: the accounts deleted, those that did not exist, those
/// whose removal failed (a warning when any did not go), and the requester's own
/// account when it was named (deleted after this answer).
pub fn deleted_note(
    gone: &[String],
    missing: &[String],
    failed: &[String],
    own: Option<&str>,
) -> Outcome {
    let mut parts = Vec::new();
    if !gone.is_empty() || own.is_none() {
        parts.push(format!("deleted: {}", gone.join(", ")));
    }
    if !missing.is_empty() {
        parts.push(format!("no such account: {}", missing.join(", ")));
    }
    if !failed.is_empty() {
        parts.push(format!(
            "failed (see the server's log): {}",
            failed.join(", ")
        ));
    }
    if let Some(me) = own {
        parts.push(format!(
            "your own account {me} is deleted after this answer"
        ));
    }
    Outcome::Note {
        warn: !missing.is_empty() || !failed.is_empty(),
        text: parts.join("; "),
    }
}

/// The `<command status='completed'/>` payload for an outcome.
pub fn completed(command: Command, id: &str, outcome: Outcome) -> Element {
    let mut c = command_el(command, id, "completed");
    match outcome {
        Outcome::Note { warn, text } => {
            let mut n = Element::bare("note", ns::COMMANDS);
            set_attr(&mut n, "type", if warn { "warn" } else { "info" });
            n.append_text(&text);
            c.append_child(n);
        }
        Outcome::Online(jids) => {
            let mut f = field(
                "jid-multi",
                "onlineuserjids",
                "The list of all online users",
                false,
            );
            for j in jids {
                f.append_child(text_el("value", &j));
            }
            c.append_child(result_form(vec![f]));
        }
        Outcome::Count(n) => {
            let mut f = field(
                "text-single",
                "onlineusersnum",
                "The number of online users",
                false,
            );
            f.append_child(text_el("value", &n.to_string()));
            c.append_child(result_form(vec![f]));
        }
    }
    c
}

/// The announcement for one session: a headline (not stored offline; RFC 6121
/// §5.2.2) from the domain.
pub fn announcement(domain: &str, to: &str, subject: Option<&str>, body: &str) -> Element {
    let mut m = Element::bare("message", ns::CLIENT);
    set_attr(&mut m, "from", domain);
    set_attr(&mut m, "to", to);
    set_attr(&mut m, "type", "headline");
    if let Some(s) = subject {
        let mut e = Element::bare("subject", ns::CLIENT);
        e.append_text(s);
        m.append_child(e);
    }
    let mut b = Element::bare("body", ns::CLIENT);
    b.append_text(body);
    m.append_child(b);
    m
}

/// disco#items of the commands node (XEP-0050 §2.2): the commands `may_run` allows.
pub fn items(domain: &str, may_run: bool) -> Element {
    let mut q = Element::bare("query", ns::DISCO_ITEMS);
    set_attr(&mut q, "node", ns::COMMANDS);
    if may_run {
        for c in Command::ALL {
            let mut i = Element::bare("item", ns::DISCO_ITEMS);
            set_attr(&mut i, "jid", domain);
            set_attr(&mut i, "node", c.node());
            set_attr(&mut i, "name", c.name());
            q.append_child(i);
        }
    }
    q
}

/// disco#info of a command node (XEP-0050 §2.3).
pub fn node_info(node: &str) -> Option<Element> {
    let c = Command::from_node(node)?;
    let mut q = Element::bare("query", ns::DISCO_INFO);
    set_attr(&mut q, "node", node);
    let mut i = Element::bare("identity", ns::DISCO_INFO);
    set_attr(&mut i, "category", "automation");
    set_attr(&mut i, "type", "command-node");
    set_attr(&mut i, "name", c.name());
    q.append_child(i);
    for f in [ns::COMMANDS, ns::DATA_FORMS] {
        let mut e = Element::bare("feature", ns::DISCO_INFO);
        set_attr(&mut e, "var", f);
        q.append_child(e);
    }
    Some(q)
}

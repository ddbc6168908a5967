//! A room's configuration and its `muc#roomconfig` data form (XEP-0045 §10.2, XEP-0004).

use super::ns;
use crate::stanza::set_attr;
use minidom::Element;
use serde::{Deserialize, Serialize};

/// Who may send private messages to occupants (`muc#roomconfig_allowpm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    Anyone,
    Participants,
    Moderators,
    None,
}

impl AllowPm {
    fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }
    fn parse(s: &str) -> Option<AllowPm> {
        Some(match s {
            "anyone" => AllowPm::Anyone,
            "participants" => AllowPm::Participants,
            "moderators" => AllowPm::Moderators,
            "none" => AllowPm::None,
            _ => return None,
        })
    }
}

/// The settings an owner chooses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    pub moderated: bool,
    /// Empty: no password.
    pub password: String,
    /// Occupants at most; 0: the service's cap.
    pub max_users: usize,
    /// Real JIDs visible to everyone (non-anonymous) rather than to moderators only.
    pub whois_anyone: bool,
    pub change_subject: bool,
    pub allow_invites: bool,
    pub allow_pm: AllowPm,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: String::new(),
            max_users: 0,
            whois_anyone: false,
            change_subject: true,
            allow_invites: false,
            allow_pm: AllowPm::Anyone,
        }
    }
}

/// Why a submitted form was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// A value the field cannot take (`not-acceptable`).
    BadValue(String),
}

fn field(var: &str, ty: &str, label: &str, values: &[&str], options: &[&str]) -> Element {
    let mut f = Element::bare("field", ns::DATA);
    set_attr(&mut f, "var", var);
    set_attr(&mut f, "type", ty);
    if !label.is_empty() {
        set_attr(&mut f, "label", label);
    }
    for o in options {
        let mut opt = Element::bare("option", ns::DATA);
        let mut v = Element::bare("value", ns::DATA);
        v.append_text(*o);
        opt.append_child(v);
        f.append_child(opt);
    }
    for v in values {
        let mut e = Element::bare("value", ns::DATA);
        e.append_text(*v);
        f.append_child(e);
    }
    f
}

fn b(v: bool) -> &'static str {
    if v { "1" } else { "0" }
}

fn parse_bool(var: &str, v: &str) -> Result<bool, FormError> {
    match v {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(FormError::BadValue(var.to_string())),
    }
}

impl Config {
    /// The configuration form an owner is sent (§10.2), with the current values.
    pub fn form(&self, max_users_cap: usize) -> Element {
        let mut x = Element::bare("x", ns::DATA);
        set_attr(&mut x, "type", "form");
        let mut title = Element::bare("title", ns::DATA);
        title.append_text("Room configuration");
        x.append_child(title);
        x.append_child(field("FORM_TYPE", "hidden", "", &[ns::ROOMCONFIG], &[]));
        let max = if self.max_users == 0 {
            max_users_cap
        } else {
            self.max_users
        }
        .to_string();
        let cap = max_users_cap.to_string();
        let fields: [Element; 13] = [
            field(
                "muc#roomconfig_roomname",
                "text-single",
                "Name",
                &[&self.name],
                &[],
            ),
            field(
                "muc#roomconfig_roomdesc",
                "text-single",
                "Description",
                &[&self.description],
                &[],
            ),
            field(
                "muc#roomconfig_persistentroom",
                "boolean",
                "Persistent",
                &[b(self.persistent)],
                &[],
            ),
            field(
                "muc#roomconfig_publicroom",
                "boolean",
                "Listed in the directory",
                &[b(self.public)],
                &[],
            ),
            field(
                "muc#roomconfig_membersonly",
                "boolean",
                "Members only",
                &[b(self.members_only)],
                &[],
            ),
            field(
                "muc#roomconfig_moderatedroom",
                "boolean",
                "Moderated",
                &[b(self.moderated)],
                &[],
            ),
            field(
                "muc#roomconfig_passwordprotectedroom",
                "boolean",
                "Password protected",
                &[b(!self.password.is_empty())],
                &[],
            ),
            field(
                "muc#roomconfig_roomsecret",
                "text-private",
                "Password",
                &[&self.password],
                &[],
            ),
            field(
                "muc#roomconfig_maxusers",
                "text-single",
                &format!("Maximum occupants (at most {cap})"),
                &[&max],
                &[],
            ),
            field(
                "muc#roomconfig_whois",
                "list-single",
                "Who may see real JIDs",
                &[if self.whois_anyone {
                    "anyone"
                } else {
                    "moderators"
                }],
                &["moderators", "anyone"],
            ),
            field(
                "muc#roomconfig_changesubject",
                "boolean",
                "Participants may change the subject",
                &[b(self.change_subject)],
                &[],
            ),
            field(
                "muc#roomconfig_allowinvites",
                "boolean",
                "Participants may invite",
                &[b(self.allow_invites)],
                &[],
            ),
            field(
                "muc#roomconfig_allowpm",
                "list-single",
                "Who may send private messages",
                &[self.allow_pm.as_str()],
                &["anyone", "participants", "moderators", "none"],
            ),
        ];
        for f in fields {
            x.append_child(f);
        }
        x
    }

    /// Apply a submitted form (`type='submit'`); fields not present keep their value,
    /// unknown fields are ignored (XEP-0004 §3.3). Nothing changes when a value is bad.
    pub fn apply(&self, form: &Element, max_users_cap: usize) -> Result<Config, FormError> {
        let mut c = self.clone();
        let mut protected = None;
        for f in form.children().filter(|f| f.is("field", ns::DATA)) {
            let Some(var) = f.attr("var") else { continue };
            let values: Vec<String> = f
                .children()
                .filter(|v| v.is("value", ns::DATA))
                .map(|v| v.text())
                .collect();
            let v = values.first().map(String::as_str).unwrap_or("");
            match var {
                "muc#roomconfig_roomname" => c.name = v.to_string(),
                "muc#roomconfig_roomdesc" => c.description = v.to_string(),
                "muc#roomconfig_persistentroom" => c.persistent = parse_bool(var, v)?,
                "muc#roomconfig_publicroom" => c.public = parse_bool(var, v)?,
                "muc#roomconfig_membersonly" => c.members_only = parse_bool(var, v)?,
                "muc#roomconfig_moderatedroom" => c.moderated = parse_bool(var, v)?,
                "muc#roomconfig_passwordprotectedroom" => protected = Some(parse_bool(var, v)?),
                "muc#roomconfig_roomsecret" => c.password = v.to_string(),
                "muc#roomconfig_maxusers" => {
                    let n: usize = match v {
                        "" | "none" => 0,
                        v => v
                            .parse()
                            .map_err(|_| FormError::BadValue(var.to_string()))?,
                    };
                    if n > max_users_cap {
                        return Err(FormError::BadValue(var.to_string()));
                    }
                    c.max_users = n;
                }
                "muc#roomconfig_whois" => {
                    c.whois_anyone = match v {
                        "anyone" => true,
                        "moderators" => false,
                        _ => return Err(FormError::BadValue(var.to_string())),
                    }
                }
                "muc#roomconfig_changesubject" => c.change_subject = parse_bool(var, v)?,
                "muc#roomconfig_allowinvites" => c.allow_invites = parse_bool(var, v)?,
                "muc#roomconfig_allowpm" => {
                    c.allow_pm =
                        AllowPm::parse(v).ok_or_else(|| FormError::BadValue(var.to_string()))?
                }
                _ => {}
            }
        }
        if protected == Some(false) {
            c.password.clear();
        }
        if protected == Some(true) && c.password.is_empty() {
            return Err(FormError::BadValue("muc#roomconfig_roomsecret".to_string()));
        }
        Ok(c)
    }

    /// The `muc_*` disco features that describe the room (§6.4).
    pub fn features(&self) -> [&'static str; 6] {
        [
            if self.public {
                "muc_public"
            } else {
                "muc_hidden"
            },
            if self.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if self.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if self.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if self.password.is_empty() {
                "muc_unsecured"
            } else {
                "muc_passwordprotected"
            },
            if self.whois_anyone {
                "muc_nonanonymous"
            } else {
                "muc_semianonymous"
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit(fields: &[(&str, &str)]) -> Element {
        let mut x = Element::bare("x", ns::DATA);
        set_attr(&mut x, "type", "submit");
        for (var, v) in fields {
            x.append_child(field(var, "", "", &[v], &[]));
        }
        x
    }

    #[test]
    fn form_lists_every_field_with_values() {
        let c = Config {
            name: "Lounge".into(),
            persistent: true,
            ..Config::default()
        };
        let f = c.form(200);
        let value = |var: &str| {
            f.children()
                .find(|e| e.attr("var") == Some(var))
                .and_then(|e| e.get_child("value", ns::DATA))
                .map(|v| v.text())
        };
        assert_eq!(value("FORM_TYPE").as_deref(), Some(ns::ROOMCONFIG));
        assert_eq!(value("muc#roomconfig_roomname").as_deref(), Some("Lounge"));
        assert_eq!(value("muc#roomconfig_persistentroom").as_deref(), Some("1"));
        assert_eq!(value("muc#roomconfig_maxusers").as_deref(), Some("200"));
        assert_eq!(value("muc#roomconfig_whois").as_deref(), Some("moderators"));
    }

    #[test]
    fn submit_changes_only_given_fields() {
        let c = Config::default();
        let n = c
            .apply(
                &submit(&[
                    ("muc#roomconfig_persistentroom", "true"),
                    ("muc#roomconfig_membersonly", "1"),
                    ("muc#roomconfig_passwordprotectedroom", "1"),
                    ("muc#roomconfig_roomsecret", "s3cret"),
                    ("muc#roomconfig_maxusers", "20"),
                    ("muc#roomconfig_whois", "anyone"),
                    ("unknown_field", "x"),
                ]),
                100,
            )
            .expect("valid");
        assert!(n.persistent && n.members_only && n.whois_anyone);
        assert_eq!(n.password, "s3cret");
        assert_eq!(n.max_users, 20);
        assert_eq!(n.public, c.public);
        assert!(n.features().contains(&"muc_passwordprotected"));
        assert!(n.features().contains(&"muc_nonanonymous"));
    }

    #[test]
    fn bad_values_are_refused() {
        let c = Config::default();
        for (var, v) in [
            ("muc#roomconfig_persistentroom", "maybe"),
            ("muc#roomconfig_maxusers", "1000"),
            ("muc#roomconfig_maxusers", "-1"),
            ("muc#roomconfig_whois", "everyone"),
            ("muc#roomconfig_allowpm", "some"),
            ("muc#roomconfig_passwordprotectedroom", "1"),
        ] {
            assert_eq!(
                c.apply(&submit(&[(var, v)]), 100),
                Err(FormError::BadValue(if v == "1" {
                    "muc#roomconfig_roomsecret".into()
                } else {
                    var.into()
                })),
                "{var}={v}"
            );
        }
    }

    #[test]
    fn turning_protection_off_clears_the_password() {
        let c = Config {
            password: "x".into(),
            ..Config::default()
        };
        let n = c
            .apply(
                &submit(&[("muc#roomconfig_passwordprotectedroom", "0")]),
                100,
            )
            .expect("valid");
        assert!(n.password.is_empty());
    }
}

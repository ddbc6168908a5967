//! What the WebAdmin can change, as pure functions: a submitted form (or JSON object)
//! becomes a [`Change`]; a change applied to the settings as they load (file and
//! overlay) gives the new overlay — only the keys the WebAdmin manages, the rest stays
//! the file's. Whether the result is valid is decided afterwards by the same checks
//! `check-config` runs (`config::Loader::load_with`).

use std::collections::{BTreeMap, HashMap};
use xmppd_proto::config::{
    ComponentSettings, DiscoItem, DomainSettings, LimitSettings, LogLevel, RouteSettings, Settings,
};

/// One change an administrator asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// The global level and the XMPPI / XMPPO overrides; `None`: unchanged (a field
    /// left out), `Some(None)`: no override (an empty value).
    LogLevel {
        level: Option<LogLevel>,
        xmppi: Option<Option<LogLevel>>,
        xmppo: Option<Option<LogLevel>>,
    },
    Channels(usize),
    AddDomain(String),
    RemoveDomain(String),
    /// `None`: unchanged (the field was left out).
    DomainFlags {
        domain: String,
        auto_signup: Option<bool>,
        allow_modify_password: Option<bool>,
    },
    AddDiscoItem {
        domain: String,
        item: DiscoItem,
    },
    RemoveDiscoItem {
        domain: String,
        jid: String,
        node: Option<String>,
    },
    SecureDomains(Vec<String>),
    AddRoute(RouteSettings),
    RemoveRoute(String),
    AddComponent {
        name: String,
        secret: String,
        description: String,
    },
    RemoveComponent(String),
    /// `[limits]` keys and their new values.
    Limits(BTreeMap<String, u64>),
}

fn field<'a>(f: &'a HashMap<String, String>, k: &str) -> Result<&'a str, String> {
    f.get(k)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("'{k}' is missing"))
}

fn opt(f: &HashMap<String, String>, k: &str) -> Option<String> {
    f.get(k)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A flag that may be left out (unchanged): `None` when missing or empty.
fn opt_flag(f: &HashMap<String, String>, k: &str) -> Result<Option<bool>, String> {
    match f.get(k).map(|v| v.trim()) {
        None | Some("") => Ok(None),
        Some(_) => flag(f, k).map(Some),
    }
}

/// The fields each action takes (besides `action`, and `csrf` from a page); any other
/// is refused, so a misspelt key is not silently ignored.
fn allowed(action: &str) -> Option<&'static [&'static str]> {
    Some(match action {
        "log_level" => &["level", "xmppi", "xmppo"],
        "channels" => &["channels"],
        "add_domain" => &["domain"],
        "remove_domain" => &["domain", "confirm"],
        "domain_flags" => &["domain", "auto_signup", "allow_modify_password"],
        "add_disco_item" => &["domain", "jid", "name", "node"],
        "remove_disco_item" => &["domain", "jid", "node"],
        "secure_domains" => &["domains"],
        "add_route" => &["domain", "host", "port", "direct_tls"],
        "remove_route" => &["domain"],
        "remove_component" => &["name"],
        "add_component" => &["name", "secret", "description"],
        "limits" => &[],
        _ => return None,
    })
}

fn flag(f: &HashMap<String, String>, k: &str) -> Result<bool, String> {
    match f.get(k).map(|v| v.trim()) {
        Some("true" | "on" | "yes" | "1") => Ok(true),
        Some("false" | "off" | "no" | "0") | None => Ok(false),
        Some(v) => Err(format!("'{k}': '{v}' is not true or false")),
    }
}

fn level(v: &str) -> Result<LogLevel, String> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| format!("'{v}' is not a log level (none, major, problems, low-level, all)"))
}

fn number<T: std::str::FromStr>(f: &HashMap<String, String>, k: &str) -> Result<T, String> {
    let v = field(f, k)?;
    v.parse()
        .map_err(|_| format!("'{k}': '{v}' is not a whole number in range"))
}

/// The names of `[limits]`, in the schema's order.
pub fn limit_names() -> Vec<String> {
    match serde_json::to_value(LimitSettings::default()) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// Read a change from the submitted fields (`action` says which).
pub fn parse(f: &HashMap<String, String>) -> Result<Change, String> {
    let lower = |k: &str| field(f, k).map(|v| v.to_ascii_lowercase());
    let action = field(f, "action")?;
    if let Some(keys) = allowed(action) {
        let limits = if action == "limits" {
            limit_names()
        } else {
            Vec::new()
        };
        let mut unknown: Vec<&str> = f
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "action" | "csrf"))
            .filter(|k| !keys.contains(k) && !limits.iter().any(|l| l == k))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(format!(
                "unknown field(s) for '{action}': {}",
                unknown.join(", ")
            ));
        }
    }
    // a log level: left out (None), empty (Some(None): no override), or a level
    let tag = |k: &str| -> Result<Option<Option<LogLevel>>, String> {
        match f.get(k).map(|v| v.trim()) {
            None => Ok(None),
            Some("") => Ok(Some(None)),
            Some(v) => level(v).map(|l| Some(Some(l))),
        }
    };
    Ok(match action {
        "log_level" => {
            let c = Change::LogLevel {
                level: opt(f, "level").map(|v| level(&v)).transpose()?,
                xmppi: tag("xmppi")?,
                xmppo: tag("xmppo")?,
            };
            if c == (Change::LogLevel {
                level: None,
                xmppi: None,
                xmppo: None,
            }) {
                return Err("give 'level', 'xmppi' or 'xmppo'".into());
            }
            c
        }
        "channels" => Change::Channels(number(f, "channels")?),
        "add_domain" => Change::AddDomain(lower("domain")?),
        "remove_domain" => Change::RemoveDomain(lower("domain")?),
        "domain_flags" => {
            let (auto_signup, allow_modify_password) = (
                opt_flag(f, "auto_signup")?,
                opt_flag(f, "allow_modify_password")?,
            );
            if auto_signup.is_none() && allow_modify_password.is_none() {
                return Err("give 'auto_signup' or 'allow_modify_password'".into());
            }
            Change::DomainFlags {
                domain: lower("domain")?,
                auto_signup,
                allow_modify_password,
            }
        }
        "add_disco_item" => Change::AddDiscoItem {
            domain: lower("domain")?,
            item: DiscoItem {
                jid: field(f, "jid")?.to_string(),
                name: opt(f, "name"),
                node: opt(f, "node"),
            },
        },
        "remove_disco_item" => Change::RemoveDiscoItem {
            domain: lower("domain")?,
            jid: field(f, "jid")?.to_string(),
            node: opt(f, "node"),
        },
        "secure_domains" => Change::SecureDomains(
            f.get("domains")
                .ok_or("'domains' is missing (an empty list clears it)")?
                .split(|c: char| c.is_whitespace() || c == ',')
                .filter(|d| !d.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
        ),
        "add_route" => Change::AddRoute(RouteSettings {
            domain: lower("domain")?,
            host: field(f, "host")?.to_string(),
            port: match opt(f, "port") {
                Some(_) => number(f, "port")?,
                None => 5269,
            },
            direct_tls: flag(f, "direct_tls")?,
        }),
        "remove_route" => Change::RemoveRoute(lower("domain")?),
        "add_component" => Change::AddComponent {
            name: lower("name")?,
            secret: f.get("secret").cloned().unwrap_or_default(),
            description: opt(f, "description").unwrap_or_default(),
        },
        "remove_component" => Change::RemoveComponent(lower("name")?),
        "limits" => {
            let mut m = BTreeMap::new();
            for k in limit_names() {
                if f.contains_key(&k) {
                    m.insert(k.clone(), number(f, &k)?);
                }
            }
            if m.is_empty() {
                return Err("no limit given".into());
            }
            Change::Limits(m)
        }
        a => return Err(format!("unknown action '{a}'")),
    })
}

fn value<T: serde::Serialize>(v: &T) -> Result<toml::Value, String> {
    toml::Value::try_from(v).map_err(|e| e.to_string())
}

fn domain_mut<'a>(s: &'a mut Settings, name: &str) -> Result<&'a mut DomainSettings, String> {
    s.domains
        .iter_mut()
        .find(|d| d.name == name)
        .ok_or_else(|| format!("'{name}' is not a hosted domain"))
}

/// Apply `change` to `s` (the settings as they load now) and to `overlay` (the
/// WebAdmin's file): the overlay gets the keys the change touches. Refusals here are
/// what the schema alone cannot see (a domain that does not exist, the last domain);
/// everything else is for the configuration checks.
pub fn apply(
    change: &Change,
    s: &mut Settings,
    overlay: &mut toml::Table,
) -> Result<String, String> {
    let what = match change {
        Change::LogLevel {
            level,
            xmppi,
            xmppo,
        } => {
            if let Some(level) = level {
                s.log_level = *level;
            }
            for (tag, l) in [("XMPPI", xmppi), ("XMPPO", xmppo)] {
                match l {
                    Some(Some(l)) => s.log_tags.insert(tag.to_string(), *l),
                    Some(None) => s.log_tags.remove(tag),
                    None => None,
                };
            }
            overlay.insert("log_level".into(), value(&s.log_level)?);
            overlay.insert("log_tags".into(), value(&s.log_tags)?);
            "log level".to_string()
        }
        Change::Channels(n) => {
            s.channels = *n;
            overlay.insert("channels".into(), value(&(*n as u64))?);
            format!("channels = {n}")
        }
        Change::AddDomain(name) => {
            if s.domain(name).is_some() {
                return Err(format!("'{name}' is hosted already"));
            }
            s.domains.push(DomainSettings::named(name));
            format!("domain {name} added")
        }
        Change::RemoveDomain(name) => {
            domain_mut(s, name)?;
            if s.domains.len() == 1 {
                return Err("the last hosted domain cannot be removed".into());
            }
            s.domains.retain(|d| &d.name != name);
            format!("domain {name} removed")
        }
        Change::DomainFlags {
            domain,
            auto_signup,
            allow_modify_password,
        } => {
            let d = domain_mut(s, domain)?;
            d.auto_signup = auto_signup.unwrap_or(d.auto_signup);
            d.allow_modify_password = allow_modify_password.unwrap_or(d.allow_modify_password);
            format!(
                "{domain}: auto signup {}, allow to modify password {}",
                on(d.auto_signup),
                on(d.allow_modify_password)
            )
        }
        Change::AddDiscoItem { domain, item } => {
            let d = domain_mut(s, domain)?;
            if d.disco_items
                .iter()
                .any(|i| i.jid == item.jid && i.node == item.node)
            {
                return Err(format!("{} is listed already", item.jid));
            }
            d.disco_items.push(item.clone());
            format!("{domain}: disco item {} added", item.jid)
        }
        Change::RemoveDiscoItem { domain, jid, node } => {
            let d = domain_mut(s, domain)?;
            let before = d.disco_items.len();
            d.disco_items
                .retain(|i| !(&i.jid == jid && &i.node == node));
            if d.disco_items.len() == before {
                return Err(format!("{jid} is not listed"));
            }
            format!("{domain}: disco item {jid} removed")
        }
        Change::SecureDomains(list) => {
            s.s2s.secure_domains = list.clone();
            let mut t = toml::Table::new();
            t.insert("secure_domains".into(), value(list)?);
            match overlay.get_mut("s2s") {
                Some(toml::Value::Table(s2s)) => {
                    s2s.insert("secure_domains".into(), value(list)?);
                }
                _ => {
                    overlay.insert("s2s".into(), toml::Value::Table(t));
                }
            }
            format!("send secure to: [{}]", list.join(", "))
        }
        Change::AddRoute(r) => {
            s.routes.retain(|x| x.domain != r.domain);
            s.routes.push(r.clone());
            overlay.insert("routes".into(), value(&s.routes)?);
            format!("route {} -> {}:{}", r.domain, r.host, r.port)
        }
        Change::RemoveRoute(domain) => {
            let before = s.routes.len();
            s.routes.retain(|x| &x.domain != domain);
            if s.routes.len() == before {
                return Err(format!("no router record for {domain}"));
            }
            overlay.insert("routes".into(), value(&s.routes)?);
            format!("route {domain} removed")
        }
        Change::AddComponent {
            name,
            secret,
            description,
        } => {
            if s.component(name).is_some() {
                return Err(format!("component {name} exists already"));
            }
            s.components.push(ComponentSettings {
                name: name.clone(),
                secret: secret.clone(),
                replace: false,
                description: description.clone(),
            });
            overlay.insert("components".into(), value(&s.components)?);
            format!("component {name} added")
        }
        Change::RemoveComponent(name) => {
            let before = s.components.len();
            s.components.retain(|c| !c.name.eq_ignore_ascii_case(name));
            if s.components.len() == before {
                return Err(format!("no component {name}"));
            }
            overlay.insert("components".into(), value(&s.components)?);
            format!("component {name} removed")
        }
        Change::Limits(m) => {
            let mut all = serde_json::to_value(&s.limits).map_err(|e| e.to_string())?;
            let mut changed = Vec::new();
            let t = match overlay.get_mut("limits") {
                Some(toml::Value::Table(t)) => t,
                _ => {
                    overlay.insert("limits".into(), toml::Value::Table(toml::Table::new()));
                    match overlay.get_mut("limits") {
                        Some(toml::Value::Table(t)) => t,
                        _ => return Err("limits".into()),
                    }
                }
            };
            for (k, v) in m {
                if all.get(k).and_then(|x| x.as_u64()) == Some(*v) {
                    continue;
                }
                all[k] = (*v).into();
                let n = i64::try_from(*v).map_err(|_| format!("{k}: {v} is too large"))?;
                t.insert(k.clone(), toml::Value::Integer(n));
                changed.push(format!("{k} = {v}"));
            }
            s.limits = serde_json::from_value(all).map_err(|e| format!("limits: {e}"))?;
            if changed.is_empty() {
                return Err("no limit changed".into());
            }
            format!("limits: {}", changed.join(", "))
        }
    };
    if matches!(
        change,
        Change::AddDomain(_)
            | Change::RemoveDomain(_)
            | Change::DomainFlags { .. }
            | Change::AddDiscoItem { .. }
            | Change::RemoveDiscoItem { .. }
    ) {
        overlay.insert("domain".into(), value(&s.domains)?);
    }
    Ok(what)
}

fn on(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forms_become_changes() {
        assert_eq!(
            parse(&form(&[
                ("action", "log_level"),
                ("level", "all"),
                ("xmppi", "major"),
                ("xmppo", "")
            ])),
            Ok(Change::LogLevel {
                level: Some(LogLevel::AllInfo),
                xmppi: Some(Some(LogLevel::Major)),
                xmppo: Some(None)
            })
        );
        assert_eq!(
            parse(&form(&[
                ("action", "domain_flags"),
                ("domain", "Example.ORG"),
                ("auto_signup", "true")
            ])),
            Ok(Change::DomainFlags {
                domain: "example.org".into(),
                auto_signup: Some(true),
                allow_modify_password: None
            })
        );
        // a field left out is unchanged, not false or empty
        assert_eq!(
            parse(&form(&[("action", "log_level"), ("xmppo", "all")])),
            Ok(Change::LogLevel {
                level: None,
                xmppi: None,
                xmppo: Some(Some(LogLevel::AllInfo))
            })
        );
        assert!(parse(&form(&[("action", "secure_domains")])).is_err());
        assert!(
            parse(&form(&[
                ("action", "domain_flags"),
                ("domain", "a.example")
            ]))
            .is_err()
        );
        // a misspelt key is refused, not ignored
        let e = parse(&form(&[
            ("action", "domain_flags"),
            ("domain", "a.example"),
            ("auto_sign_up", "true"),
        ]));
        assert!(
            e.as_ref().is_err_and(|e| e.contains("auto_sign_up")),
            "{e:?}"
        );
        assert!(parse(&form(&[("action", "limits"), ("max_depht", "3")])).is_err());
        assert!(parse(&form(&[("action", "log_level"), ("level", "loud")])).is_err());
        assert!(parse(&form(&[("action", "channels"), ("channels", "-1")])).is_err());
        assert!(parse(&form(&[("action", "limits"), ("max_depth", "x")])).is_err());
        assert!(parse(&form(&[("action", "explode")])).is_err());
        assert!(parse(&form(&[])).is_err());
    }

    #[test]
    fn a_change_writes_only_its_keys_into_the_overlay() {
        let mut s = Settings::default();
        let mut o = toml::Table::new();
        apply(&Change::AddDomain("new.example".into()), &mut s, &mut o).expect("added");
        assert_eq!(o.keys().collect::<Vec<_>>(), ["domain"]);
        assert_eq!(s.domains.len(), 2);
        let mut m = BTreeMap::new();
        m.insert("max_depth".to_string(), 20);
        m.insert("auth_timeout".to_string(), s.limits.auth_timeout);
        apply(&Change::Limits(m), &mut s, &mut o).expect("limits");
        let limits = o["limits"].as_table().expect("table");
        // the unchanged limit is not written
        assert_eq!(limits.keys().collect::<Vec<_>>(), ["max_depth"]);
        assert_eq!(s.limits.max_depth, 20);
        apply(
            &Change::SecureDomains(vec!["*.bank.example".into()]),
            &mut s,
            &mut o,
        )
        .expect("s2s");
        assert_eq!(
            o["s2s"]["secure_domains"][0].as_str(),
            Some("*.bank.example")
        );
        // refusals the schema cannot see
        assert!(apply(&Change::AddDomain("new.example".into()), &mut s, &mut o).is_err());
        assert!(apply(&Change::RemoveRoute("nowhere".into()), &mut s, &mut o).is_err());
        apply(&Change::RemoveDomain("new.example".into()), &mut s, &mut o).expect("removed");
        assert!(apply(&Change::RemoveDomain("localhost".into()), &mut s, &mut o).is_err());
        // the overlay reads back as TOML the configuration takes
        let text = toml::to_string(&o).expect("toml");
        assert!(text.contains("max_depth = 20"), "{text}");
    }
}

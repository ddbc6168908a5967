//! The WebAdmin's settings pages — Server (log levels, channels, limits), Domains
//! (hosted domains, Auto Signup, Allow to Modify Password, supplementary disco items),
//! Federation & components (send-secure-to domains, router records, components) — and
//! `/api/settings`. Every change goes through [`submit`]: checked like the
//! configuration file, written to the overlay, applied like a SIGHUP.

use super::auth::{Auth, csrf_ok};
use super::changes;
use super::page::{self, Outcome, csrf_field, esc};
use super::{Shared, text};
use crate::config;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;
use xmppd_proto::config::{LogLevel, Settings};

/// Check, write and apply one change; what happened, for the page or the API.
pub fn submit(shared: &Shared, fields: &HashMap<String, String>) -> Outcome {
    let change = match changes::parse(fields) {
        Ok(c) => c,
        Err(e) => return Outcome::refused(e),
    };
    // one change (or SIGHUP reload) at a time: each reads the overlay the previous one
    // wrote, and a reload cannot apply the file between this write and this apply
    let _one = shared.admin.reload_lock();
    let loader = &shared.admin.loader;
    // the overlay is computed from the file and the overlay alone: a command-line
    // override (`--domain`) is the running process's, not a setting to save
    let saved = config::Loader {
        domain: None,
        ..loader.clone()
    };
    let mut s = match saved.load() {
        Ok(s) => s,
        Err(e) => return Outcome::refused(format!("the configuration does not load: {e}")),
    };
    let data_dir = s.data_dir.clone();
    let mut overlay = match config::read_overlay(&data_dir) {
        Ok(o) => o,
        Err(e) => return Outcome::refused(e.to_string()),
    };
    let what = match changes::apply(&change, &mut s, &mut overlay) {
        Ok(w) => w,
        Err(e) => return Outcome::refused(e),
    };
    let new = match loader.load_with(Some(&overlay)) {
        Ok(n) => n,
        Err(config::ConfigError::Invalid { problems, .. }) => {
            return Outcome {
                refused: problems.iter().map(|p| p.message.clone()).collect(),
                ..Outcome::default()
            };
        }
        Err(e) => return Outcome::refused(e.to_string()),
    };
    // the overlay as it was, put back if the change cannot be applied
    let overlay_path = config::overlay_file(&data_dir);
    let previous = match std::fs::read(&overlay_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Outcome::refused(format!("{}: {e}", overlay_path.display())),
    };
    if let Err(e) = config::write_overlay(&data_dir, &overlay) {
        slog::error!(shared.ctx.log, "WebAdmin: settings not saved"; "error" => %e);
        return Outcome::refused(format!(
            "{} could not be written: {e}",
            config::overlay_file(&data_dir).display()
        ));
    }
    slog::info!(shared.ctx.log, "WebAdmin change"; "change" => &what);
    let base = shared.admin.loader.base();
    let (mut applied, restart) = match crate::reload::apply(
        &shared.ctx,
        &shared.admin.logs,
        &base,
        new,
    ) {
        Ok(r) => r,
        Err(e) => {
            // apply fails before it changes anything (certificates are read first):
            // the overlay goes back to what runs
            let restored = match &previous {
                Some(b) => crate::reload::write_atomically(&overlay_path, b, 0o600),
                None => std::fs::remove_file(&overlay_path),
            };
            if let Err(re) = restored {
                slog::error!(shared.ctx.log, "WebAdmin change not applied, and the overlay not restored";
                        "error" => %e, "restore_error" => %re);
                return Outcome::refused(format!(
                    "not applied: {e}; {} could not be restored ({re}): it holds the change, which the next reload will try",
                    overlay_path.display()
                ));
            }
            slog::error!(shared.ctx.log, "WebAdmin change not applied"; "error" => %e);
            return Outcome::refused(format!("not changed: {e}"));
        }
    };
    if applied.is_empty() && restart.is_empty() {
        applied.push(format!("{what} (saved; it was in force already)"));
    } else {
        applied.insert(0, what);
    }
    Outcome {
        applied,
        restart,
        refused: Vec::new(),
    }
}

/// [`submit`] on the blocking pool: it reads and writes files (fsync included) and
/// parses certificates, which must not stall the single HTTP worker.
async fn submit_blocking(shared: &web::Data<Shared>, fields: HashMap<String, String>) -> Outcome {
    let shared = shared.clone();
    web::block(move || submit(&shared, &fields))
        .await
        .unwrap_or_else(|e| Outcome::refused(format!("not changed: {e}")))
}

fn levels(current: Option<LogLevel>, none_label: Option<&str>) -> String {
    let mut out = String::new();
    if let Some(label) = none_label {
        let sel = if current.is_none() { " selected" } else { "" };
        out.push_str(&format!("<option value=\"\"{sel}>{}</option>", esc(label)));
    }
    for (v, l, name) in [
        ("none", LogLevel::None, "None"),
        ("major", LogLevel::Major, "Major"),
        ("problems", LogLevel::Problems, "Problems"),
        ("low-level", LogLevel::LowLevel, "Low-Level"),
        ("all", LogLevel::AllInfo, "All Info"),
    ] {
        let sel = if current == Some(l) { " selected" } else { "" };
        out.push_str(&format!("<option value=\"{v}\"{sel}>{name}</option>"));
    }
    out
}

fn yes_no(name: &str, on: bool) -> String {
    let (y, n) = if on {
        (" selected", "")
    } else {
        ("", " selected")
    };
    format!(
        "<select name=\"{name}\"><option value=\"true\"{y}>Yes</option><option value=\"false\"{n}>No</option></select>"
    )
}

fn server_body(s: &Settings, csrf: &str) -> String {
    let tag = |t: &str| s.log_tags.get(t).copied();
    let limits: String = match serde_json::to_value(&s.limits) {
        Ok(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                format!(
                    "<label>{k}<input type=\"number\" min=\"0\" name=\"{k}\" value=\"{v}\"></label>",
                    k = esc(k)
                )
            })
            .collect(),
        _ => String::new(),
    };
    format!(
        "<h1>Server</h1>\
         <section><h2>Log Level</h2><p class=\"hint\">What the log records; XMPPI (inbound \
         connections) and XMPPO (outbound server connections) may differ from the rest.</p>\
         <form class=\"row\" method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"log_level\">\
         <label>Log level<select name=\"level\">{global}</select></label>\
         <label>XMPPI<select name=\"xmppi\">{i}</select></label>\
         <label>XMPPO<select name=\"xmppo\">{o}</select></label>\
         <button>Save</button></form></section>\
         <section><h2>Channels</h2><p class=\"hint\">Concurrent connections at most (clients, \
         servers and components together); more are refused.</p>\
         <form class=\"row\" method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"channels\">\
         <label>Channels<input type=\"number\" min=\"0\" name=\"channels\" value=\"{ch}\"></label>\
         <button>Save</button></form></section>\
         <section><h2>Limits</h2><p class=\"hint\">Bounds on what a peer can make the server \
         hold or do (sizes in bytes, times in seconds, 0 turns a rate limit off); \
         <code>config/xmppd.toml</code> explains each.</p>\
         <form method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"limits\">\
         <div class=\"grid\">{limits}</div><button>Save limits</button></form></section>",
        c = csrf_field(csrf),
        global = levels(Some(s.log_level), None),
        i = levels(tag("XMPPI"), Some("(as the log level)")),
        o = levels(tag("XMPPO"), Some("(as the log level)")),
        ch = s.channels,
    )
}

fn domains_body(s: &Settings, csrf: &str) -> String {
    let c = csrf_field(csrf);
    let mut out = String::from("<h1>Domains</h1>");
    for d in &s.domains {
        let name = esc(&d.name);
        let items: String = d
            .disco_items
            .iter()
            .map(|i| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td><form class=\"inline\" method=\"post\">{c}\
                     <input type=\"hidden\" name=\"action\" value=\"remove_disco_item\">\
                     <input type=\"hidden\" name=\"domain\" value=\"{name}\">\
                     <input type=\"hidden\" name=\"jid\" value=\"{}\">\
                     <input type=\"hidden\" name=\"node\" value=\"{}\">\
                     <button class=\"danger\">Remove</button></form></td></tr>",
                    esc(&i.jid),
                    esc(i.name.as_deref().unwrap_or("")),
                    esc(i.node.as_deref().unwrap_or("")),
                    esc(&i.jid),
                    esc(i.node.as_deref().unwrap_or("")),
                )
            })
            .collect();
        let items = if items.is_empty() {
            "<p class=\"hint\">No supplementary items.</p>".to_string()
        } else {
            format!(
                "<table><tr><th>JID</th><th>Name</th><th>Node</th><th></th></tr>{items}</table>"
            )
        };
        out.push_str(&format!(
            "<section id=\"d-{name}\"><h2>{name} <span class=\"pill{on}\">auto signup {signup}</span></h2>\
             <form class=\"row\" method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"domain_flags\">\
             <input type=\"hidden\" name=\"domain\" value=\"{name}\">\
             <label>Auto Signup{auto}</label><label>Allow to Modify Password{modify}</label>\
             <button>Save</button></form>\
             <h3>Supplementary discovery items</h3>{items}\
             <form class=\"row\" method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"add_disco_item\">\
             <input type=\"hidden\" name=\"domain\" value=\"{name}\">\
             <label>JID<input name=\"jid\" required placeholder=\"irc.example.net\"></label>\
             <label>Name<input name=\"name\"></label><label>Node<input name=\"node\"></label>\
             <button>Add item</button></form>\
             <form class=\"row sep\" method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"remove_domain\">\
             <input type=\"hidden\" name=\"domain\" value=\"{name}\">\
             <label class=\"check\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required>sure</label>\
             <button class=\"danger\">Remove domain {name}</button></form></section>",
            on = if d.auto_signup { " on" } else { "" },
            signup = if d.auto_signup { "on" } else { "off" },
            auto = yes_no("auto_signup", d.auto_signup),
            modify = yes_no("allow_modify_password", d.allow_modify_password),
        ));
    }
    out.push_str(&format!(
        "<section><h2>Add a hosted domain</h2><p class=\"hint\">It serves clients at once \
         (with the default certificate until a restart); create its accounts on the \
         Accounts page.</p><form class=\"row\" method=\"post\">{c}\
         <input type=\"hidden\" name=\"action\" value=\"add_domain\">\
         <label>Domain<input name=\"domain\" required placeholder=\"example.org\"></label>\
         <button>Add domain</button></form></section>"
    ));
    out
}

fn federation_body(s: &Settings, csrf: &str) -> String {
    let c = csrf_field(csrf);
    let routes: String = s
        .routes
        .iter()
        .map(|r| {
            format!(
                "<tr><td>{d}</td><td>{}</td><td>{}</td><td>{}</td><td><form class=\"inline\" method=\"post\">{c}\
                 <input type=\"hidden\" name=\"action\" value=\"remove_route\">\
                 <input type=\"hidden\" name=\"domain\" value=\"{d}\">\
                 <button class=\"danger\">Remove</button></form></td></tr>",
                esc(&r.host),
                r.port,
                if r.direct_tls { "direct TLS" } else { "STARTTLS" },
                d = esc(&r.domain),
            )
        })
        .collect();
    let components: String = s
        .components
        .iter()
        .map(|x| {
            format!(
                "<tr><td>{n}</td><td>{}</td><td><form class=\"inline\" method=\"post\">{c}\
                 <input type=\"hidden\" name=\"action\" value=\"remove_component\">\
                 <input type=\"hidden\" name=\"name\" value=\"{n}\">\
                 <button class=\"danger\">Remove</button></form></td></tr>",
                esc(&x.description),
                n = esc(&x.name),
            )
        })
        .collect();
    let none = |cols: usize, rows: String| {
        if rows.is_empty() {
            format!("<tr><td class=\"none\" colspan=\"{cols}\">None configured.</td></tr>")
        } else {
            rows
        }
    };
    let (routes, components) = (none(5, routes), none(3, components));
    format!(
        "<h1>Federation &amp; components</h1>\
         <section><h2>Send Secure To Domains</h2><p class=\"hint\">Domains (patterns like \
         <code>*.company.dom</code>) reached only over TLS with a certificate that validates. \
         One a line.</p><form method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"secure_domains\">\
         <textarea name=\"domains\">{secure}</textarea><button>Save</button></form></section>\
         <section><h2>Router records</h2><p class=\"hint\">Where to reach a remote domain \
         instead of where DNS says.</p>\
         <table><tr><th>Domain</th><th>Host</th><th>Port</th><th>TLS</th><th></th></tr>{routes}</table>\
         <form class=\"row\" method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"add_route\">\
         <label>Domain<input name=\"domain\" required placeholder=\"*.company.dom\"></label>\
         <label>Host<input name=\"host\" required></label>\
         <label>Port<input type=\"number\" name=\"port\" value=\"5269\" min=\"1\" max=\"65535\"></label>\
         <label>Direct TLS{direct}</label><button>Add record</button></form></section>\
         <section><h2>Components</h2><p class=\"hint\">Trusted components (XEP-0114) that may \
         attach with a shared secret (8 characters at least).</p>\
         <table><tr><th>Name</th><th>Description</th><th></th></tr>{components}</table>\
         <form class=\"row\" method=\"post\">{c}<input type=\"hidden\" name=\"action\" value=\"add_component\">\
         <label>Name<input name=\"name\" required placeholder=\"irc.example.org\"></label>\
         <label>Secret<input name=\"secret\" type=\"password\" required minlength=\"8\" autocomplete=\"new-password\"></label>\
         <label>Description<input name=\"description\"></label><button>Add component</button></form></section>",
        secure = esc(&s.s2s.secure_domains.join("\n")),
        direct = yes_no("direct_tls", false),
    )
}

/// Which page: (path, title, body).
fn render(which: &str, s: &Settings, csrf: &str) -> (&'static str, &'static str, String) {
    match which {
        "domains" => ("/admin/domains", "Domains", domains_body(s, csrf)),
        "federation" => (
            "/admin/federation",
            "Federation & components",
            federation_body(s, csrf),
        ),
        _ => ("/admin/settings", "Server", server_body(s, csrf)),
    }
}

fn page_of(req: &HttpRequest) -> &str {
    req.path().rsplit('/').next().unwrap_or("settings")
}

fn show(shared: &Shared, req: &HttpRequest, outcome: &Outcome, status: StatusCode) -> HttpResponse {
    let auth = Auth::of(req);
    let who = auth.as_ref().and_then(Auth::who);
    let csrf = who.map_or(shared.csrf.as_str(), |(_, c)| c);
    let s = shared.ctx.settings.get();
    let (path, title, body) = render(page_of(req), &s, csrf);
    page::html(
        status,
        page::frame(title, path, who, &format!("{}{body}", outcome.html())),
    )
}

pub async fn get_page(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    show(&shared, &req, &Outcome::default(), StatusCode::OK)
}

pub async fn post_page(
    shared: web::Data<Shared>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    if !csrf_ok(&shared, &req, form.get("csrf").map(String::as_str)) {
        return text(StatusCode::FORBIDDEN, "missing or wrong CSRF token\n");
    }
    // a person ticks "sure" before removing a domain (the API's callers need not)
    let outcome = if form.get("action").is_some_and(|a| a == "remove_domain")
        && form.get("confirm").is_none_or(|c| c != "yes")
    {
        Outcome::refused("tick \"sure\" to remove a domain")
    } else {
        submit_blocking(&shared, form.into_inner()).await
    };
    let status = if outcome.refused.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    show(&shared, &req, &outcome, status)
}

/// The live settings as JSON, secrets left out.
pub fn settings_json(s: &Settings) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    if let Some(cs) = v.get_mut("components").and_then(|c| c.as_array_mut()) {
        for c in cs {
            c["secret"] = "***".into();
        }
    }
    for (section, key) in [("s2s", "dialback_secret"), ("storage", "postgres_url")] {
        if v[section][key].as_str().is_some_and(|x| !x.is_empty()) {
            v[section][key] = "***".into();
        }
    }
    v
}

pub async fn api_get(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!("{}\n", settings_json(&shared.ctx.settings.get())))
}

/// A JSON object's members as form fields (arrays one item a line).
pub fn json_fields(body: &[u8]) -> Result<HashMap<String, String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let scalar = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    Ok(obj
        .iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join("\n"),
                v => scalar(v),
            };
            (k.clone(), s)
        })
        .collect())
}

pub fn json_answer(status: StatusCode, v: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(format!("{v}\n"))
}

pub async fn api_post(
    shared: web::Data<Shared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let fields = match json_fields(&body) {
        Ok(f) => f,
        Err(e) => return json_answer(StatusCode::BAD_REQUEST, Outcome::refused(e).json()),
    };
    if !csrf_ok(&shared, &req, fields.get("csrf").map(String::as_str)) {
        return text(StatusCode::FORBIDDEN, "missing or wrong CSRF token\n");
    }
    let outcome = submit_blocking(&shared, fields).await;
    let status = if outcome.refused.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    json_answer(status, outcome.json())
}

//! The WebAdmin's page frame: one small stylesheet, the navigation, HTML escaping, and
//! the answer boxes (applied / needs restart / refused) every settings page shows.

use actix_web::HttpResponse;
use actix_web::http::header;

/// The stylesheet, served as `/admin/style.css` (the pages' CSP allows nothing inline).
pub const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#5d6675;--line:#dde1e7;--bg:#f6f7f9;--accent:#2357c6;--ok:#1f7a3a;--warn:#9a5b00;--bad:#b3261e}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
header{background:#1d2330;color:#fff;padding:0 24px;display:flex;align-items:center;gap:24px;height:48px}
header b{font-size:16px;letter-spacing:.02em}
header nav{display:flex;gap:4px;flex:1}
header nav a{color:#c9d2e3;text-decoration:none;padding:6px 10px;border-radius:4px}
header nav a.on,header nav a:hover{background:#34405a;color:#fff}
header form{margin:0}
header .who{color:#c9d2e3;font-size:13px}
main{max-width:1040px;margin:24px auto;padding:0 24px}
h1{font-size:22px;margin:0 0 16px}
h2{font-size:16px;margin:0 0 10px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;padding:16px 18px;margin-bottom:18px}
p.hint{color:var(--muted);margin:0 0 10px;font-size:13px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:middle}
th{font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
form.row{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:6px 0}
form.inline{display:inline;margin:0}
label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:3px}
input,select,textarea{font:inherit;padding:5px 8px;border:1px solid #c4cad3;border-radius:4px;background:#fff;color:var(--fg)}
textarea{width:100%;min-height:70px}
input[type=number]{width:130px}
button{font:inherit;padding:5px 14px;border-radius:4px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.plain{background:#fff;color:var(--accent)}
button.danger{background:#fff;color:var(--bad);border-color:var(--bad)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:10px 16px;margin-bottom:10px}
.msg{border-radius:6px;padding:10px 14px;margin-bottom:16px;border:1px solid}
.msg.ok{background:#eaf6ee;border-color:#b5dcc1;color:var(--ok)}
.msg.warn{background:#fdf4e3;border-color:#efd39c;color:var(--warn)}
.msg.bad{background:#fbeaea;border-color:#eab8b5;color:var(--bad)}
.msg ul{margin:4px 0 0;padding-left:20px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;background:#eef1f6;color:var(--muted)}
.pill.on{background:#e3f1e8;color:var(--ok)}
.login{max-width:360px;margin:80px auto}
.login form{display:flex;flex-direction:column;gap:12px}
.pager{display:flex;gap:10px;align-items:center;color:var(--muted)}
code{background:#eef1f6;padding:1px 5px;border-radius:3px}
h3{font-size:14px;margin:18px 0 4px}
.sep{margin-top:16px;padding-top:12px;border-top:1px solid var(--line)}
td.none{color:var(--muted);font-style:italic}
label.check{display:inline-flex;flex-direction:row;align-items:center;gap:4px;margin-right:6px}
"#;

/// `text` for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The pages of the navigation: (path, title).
pub const NAV: [(&str, &str); 5] = [
    ("/admin/settings", "Server"),
    ("/admin/domains", "Domains"),
    ("/admin/federation", "Federation & components"),
    ("/admin/accounts", "Accounts"),
    ("/monitor", "Monitor"),
];

/// A whole page: header with the navigation (`current` highlighted), who is logged in
/// with the logout button, and `body`.
pub fn frame(title: &str, current: &str, who: Option<(&str, &str)>, body: &str) -> String {
    // the navigation only for someone logged in (the login page has none)
    let nav: String = NAV
        .iter()
        .filter(|_| who.is_some())
        .map(|(path, name)| {
            let on = if *path == current {
                " class=\"on\""
            } else {
                ""
            };
            format!("<a href=\"{path}\"{on}>{}</a>", esc(name))
        })
        .collect();
    let user = match who {
        Some((jid, csrf)) => format!(
            "<span class=\"who\">{}</span><form method=\"post\" action=\"/admin/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"plain\">Log out</button></form>",
            esc(jid),
            esc(csrf)
        ),
        None => String::new(),
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title} · xmppd</title><link rel=\"stylesheet\" href=\"/admin/style.css\"></head>\
         <body><header><b>xmppd</b><nav>{nav}</nav>{user}</header><main>{body}</main></body></html>",
        title = esc(title),
    )
}

/// An HTML answer with the headers every WebAdmin page carries.
pub fn html(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "same-origin"))
        .body(body)
}

/// What a change did, as the box above the page.
#[derive(Debug, Default)]
pub struct Outcome {
    pub applied: Vec<String>,
    pub restart: Vec<String>,
    pub refused: Vec<String>,
}

impl Outcome {
    pub fn refused(why: impl Into<String>) -> Self {
        Outcome {
            refused: vec![why.into()],
            ..Outcome::default()
        }
    }

    pub fn done(what: impl Into<String>) -> Self {
        Outcome {
            applied: vec![what.into()],
            ..Outcome::default()
        }
    }

    pub fn html(&self) -> String {
        let list = |items: &[String]| -> String {
            items
                .iter()
                .map(|i| format!("<li>{}</li>", esc(i)))
                .collect()
        };
        let mut out = String::new();
        if !self.refused.is_empty() {
            out.push_str(&format!(
                "<div class=\"msg bad\" role=\"alert\"><b>Not changed.</b><ul>{}</ul></div>",
                list(&self.refused)
            ));
        }
        if !self.applied.is_empty() {
            out.push_str(&format!(
                "<div class=\"msg ok\" role=\"status\"><b>Applied.</b><ul>{}</ul></div>",
                list(&self.applied)
            ));
        }
        if !self.restart.is_empty() {
            out.push_str(&format!(
                "<div class=\"msg warn\" role=\"status\"><b>Saved; needs a restart:</b><ul>{}</ul></div>",
                list(&self.restart)
            ));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": self.refused.is_empty(),
            "applied": self.applied,
            "needs_restart": self.restart,
            "errors": self.refused,
        })
    }
}

/// A hidden CSRF field for a form.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}

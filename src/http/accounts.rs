//! The WebAdmin's accounts: list with search (paged), create, reset a password,
//! delete — the page `/admin/accounts` and `/api/accounts`. Deleting goes through the
//! account's actor, the path of XEP-0077 `<remove/>`: stored data deleted,
//! subscriptions cancelled both ways, every session closed.

use super::auth::{Auth, csrf_ok};
use super::page::{self, Outcome, csrf_field, esc};
use super::settings::{json_answer, json_fields};
use super::{Shared, text};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use std::collections::HashMap;
use std::time::Duration;
use xmppd_actors::signals::to_registry::RemoveAccount;
use xmppd_actors::storage::StorageError;

/// Accounts on one page of the list.
pub const PAGE_SIZE: usize = 50;
/// How long a delete waits for the account's actor and storage (below the HTTP
/// side's 5 s request deadline, so the answer says what happened).
const DELETE_WAIT: Duration = Duration::from_secs(4);
/// The longest search string (bytes); a longer one is refused with 400.
pub const MAX_SEARCH: usize = 256;

#[derive(Debug, Default, serde::Deserialize)]
pub struct Query {
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<usize>,
}

/// One page of the accounts of `domain` whose name contains `q`: (names, total
/// matching, the page shown: `page`, or the last one when `page` is beyond it).
pub fn select(all: &[String], q: &str, page: usize) -> (Vec<String>, usize, usize) {
    let q = q.trim().to_lowercase();
    let hits: Vec<&String> = all
        .iter()
        .filter(|u| u.to_lowercase().contains(&q))
        .collect();
    let total = hits.len();
    let page = page.min(total.div_ceil(PAGE_SIZE).max(1) - 1);
    let names: Vec<String> = hits
        .into_iter()
        .skip(page * PAGE_SIZE)
        .take(PAGE_SIZE)
        .cloned()
        .collect();
    (names, total, page)
}

async fn list(shared: &Shared, domain: &str) -> Result<Vec<String>, StorageError> {
    let d = domain.to_string();
    let mut v = shared.ctx.storage.run(move |b| b.list_accounts(&d)).await?;
    v.sort();
    Ok(v)
}

fn domain_of(shared: &Shared, q: &Query) -> Option<String> {
    let s = shared.ctx.settings.get();
    match &q.domain {
        Some(d) => s.domain(&d.to_ascii_lowercase()).map(|d| d.name.clone()),
        None => s.domains.first().map(|d| d.name.clone()),
    }
}

/// `user@domain` of a hosted domain: (user, domain).
fn account(shared: &Shared, jid: &str) -> Result<(String, String), String> {
    let b = xmpp_parsers::jid::BareJid::new(jid.trim())
        .map_err(|_| format!("'{jid}' is not a valid user@domain"))?;
    let user = b
        .node()
        .map(|n| n.to_string())
        .ok_or_else(|| format!("'{jid}' has no user name"))?;
    let domain = b.domain().to_string();
    if shared.ctx.settings.get().domain(&domain).is_none() {
        return Err(format!("'{domain}' is not a hosted domain"));
    }
    Ok((user, domain))
}

/// Carry out `action` (create, password, delete) on `jid`.
pub async fn act(shared: &Shared, f: &HashMap<String, String>) -> Outcome {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let (user, domain) = match account(shared, get("jid")) {
        Ok(a) => a,
        Err(e) => return Outcome::refused(e),
    };
    let jid = format!("{user}@{domain}");
    let log = &shared.ctx.log;
    match get("action") {
        action @ ("create" | "password") => {
            let create = action == "create";
            if create && xmppd_proto::xep::register::is_reserved(&user) {
                return Outcome::refused(format!(
                    "names starting with {} are reserved for anonymous sessions",
                    xmppd_proto::xep::register::ANONYMOUS_PREFIX
                ));
            }
            let password = get("password");
            if password.is_empty() {
                return Outcome::refused("the password is empty");
            }
            let settings = shared.ctx.settings.get();
            let stored = shared
                .ctx
                .storage
                .store_password(
                    domain.clone(),
                    user.clone(),
                    password.to_string(),
                    &settings.auth,
                    create,
                )
                .await;
            match stored {
                Ok(()) if create => {
                    slog::info!(log, "WebAdmin: account created"; "jid" => &jid);
                    Outcome::done(format!("{jid} created"))
                }
                Ok(()) => {
                    slog::info!(log, "WebAdmin: password reset"; "jid" => &jid);
                    Outcome::done(format!("password of {jid} changed"))
                }
                Err(StorageError::Exists) => Outcome::refused(format!("{jid} exists already")),
                Err(StorageError::NotFound) => Outcome::refused(format!("no account {jid}")),
                Err(e) => Outcome::refused(e.to_string()),
            }
        }
        "delete" => {
            let Ok(bare) = xmpp_parsers::jid::BareJid::new(&jid) else {
                return Outcome::refused(format!("'{jid}' is not a valid JID"));
            };
            let (done, answer) = tokio::sync::oneshot::channel();
            let sent = shared
                .ctx
                .registry
                .remove_account
                .try_send(RemoveAccount { bare, done });
            if sent.is_err() {
                return Outcome::refused("the server is busy: try again");
            }
            // the administrator's own sessions end now, whatever comes of it (a
            // storage failure only logs them out); the wait stays within the request's
            // deadline, REQUEST_DEADLINE (5 s), which would otherwise cut it with a 408
            shared.sessions.close_user(&jid);
            match tokio::time::timeout(DELETE_WAIT, answer).await {
                Ok(Ok(Ok(()))) => {
                    slog::info!(log, "WebAdmin: account deleted"; "jid" => &jid);
                    Outcome::done(format!("{jid} deleted"))
                }
                Ok(Ok(Err(StorageError::NotFound))) => {
                    Outcome::refused(format!("no account {jid}"))
                }
                Ok(Ok(Err(e))) => Outcome::refused(e.to_string()),
                _ => Outcome::refused(
                    "the deletion was not confirmed within 4 s: it may still complete (see the list)",
                ),
            }
        }
        a => Outcome::refused(format!("unknown action '{a}'")),
    }
}

async fn render(shared: &Shared, req: &HttpRequest, q: &Query, outcome: &Outcome) -> HttpResponse {
    let auth = Auth::of(req);
    let who = auth.as_ref().and_then(Auth::who);
    let csrf = who.map_or(shared.csrf.as_str(), |(_, c)| c);
    let c = csrf_field(csrf);
    let s = shared.ctx.settings.get();
    let Some(domain) = domain_of(shared, q) else {
        return text(StatusCode::NOT_FOUND, "no such hosted domain\n");
    };
    let search = q.q.clone().unwrap_or_default();
    if search.len() > MAX_SEARCH {
        return text(StatusCode::BAD_REQUEST, "the search is too long\n");
    }
    let (names, total, page_no) = match list(shared, &domain).await {
        Ok(all) => select(&all, &search, q.page.unwrap_or(0)),
        Err(e) => {
            slog::error!(shared.ctx.log, "WebAdmin: accounts not listed"; "error" => %e);
            return text(StatusCode::SERVICE_UNAVAILABLE, "storage failed\n");
        }
    };
    let options: String = s
        .domains
        .iter()
        .map(|d| {
            let sel = if d.name == domain { " selected" } else { "" };
            format!("<option{sel}>{}</option>", esc(&d.name))
        })
        .collect();
    let rows: String = names
        .iter()
        .map(|u| {
            let jid = esc(&format!("{u}@{domain}"));
            format!(
                "<tr><td>{jid}</td><td><form class=\"inline\" method=\"post\">{c}\
                 <input type=\"hidden\" name=\"action\" value=\"password\">\
                 <input type=\"hidden\" name=\"jid\" value=\"{jid}\">\
                 <input type=\"password\" name=\"password\" placeholder=\"new password\" required autocomplete=\"new-password\"> \
                 <button class=\"plain\">Reset password</button></form></td>\
                 <td><form class=\"inline\" method=\"post\">{c}\
                 <input type=\"hidden\" name=\"action\" value=\"delete\">\
                 <input type=\"hidden\" name=\"jid\" value=\"{jid}\">\
                 <label class=\"check\"><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required>sure</label> \
                 <button class=\"danger\">Delete</button></form></td></tr>"
            )
        })
        .collect();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let link = |p: usize, label: &str| {
        format!(
            "<a href=\"/admin/accounts?domain={}&amp;q={}&amp;page={p}\">{label}</a>",
            esc(&domain),
            esc(&search)
        )
    };
    let mut pager = format!(
        "<span>{total} account(s), page {} of {pages}</span>",
        page_no + 1
    );
    if page_no > 0 {
        pager.push_str(&link(page_no - 1, "← previous"));
    }
    if page_no + 1 < pages {
        pager.push_str(&link(page_no + 1, "next →"));
    }
    let body = format!(
        "{msg}<h1>Accounts</h1>\
         <section><form class=\"row\" method=\"get\">\
         <label>Domain<select name=\"domain\">{options}</select></label>\
         <label>Search<input name=\"q\" value=\"{sq}\" placeholder=\"part of a name\"></label>\
         <button class=\"plain\">Search</button></form>\
         <table><tr><th>Account</th><th>Password</th><th></th></tr>{rows}</table>\
         <div class=\"pager\">{pager}</div></section>\
         <section><h2>Create an account</h2><form class=\"row\" method=\"post\">{c}\
         <input type=\"hidden\" name=\"action\" value=\"create\">\
         <label>JID<input name=\"jid\" required placeholder=\"user@{d}\"></label>\
         <label>Password<input type=\"password\" name=\"password\" required autocomplete=\"new-password\"></label>\
         <button>Create</button></form></section>",
        msg = outcome.html(),
        sq = esc(&search),
        d = esc(&domain),
    );
    let status = if outcome.refused.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    page::html(
        status,
        page::frame("Accounts", "/admin/accounts", who, &body),
    )
}

pub async fn page(
    shared: web::Data<Shared>,
    req: HttpRequest,
    q: web::Query<Query>,
) -> HttpResponse {
    render(&shared, &req, &q, &Outcome::default()).await
}

pub async fn post_page(
    shared: web::Data<Shared>,
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    if !csrf_ok(&shared, &req, form.get("csrf").map(String::as_str)) {
        return text(StatusCode::FORBIDDEN, "missing or wrong CSRF token\n");
    }
    // a person ticks "sure" before a delete (the API's callers need not)
    let outcome = if form.get("action").is_some_and(|a| a == "delete")
        && form.get("confirm").is_none_or(|c| c != "yes")
    {
        Outcome::refused("tick \"sure\" to delete an account")
    } else {
        act(&shared, &form).await
    };
    let domain = form
        .get("jid")
        .and_then(|j| j.rsplit_once('@'))
        .map(|(_, d)| d.to_string());
    let q = Query {
        domain,
        ..Query::default()
    };
    render(&shared, &req, &q, &outcome).await
}

pub async fn api_get(shared: web::Data<Shared>, q: web::Query<Query>) -> HttpResponse {
    let Some(domain) = domain_of(&shared, &q) else {
        return json_answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": "no such hosted domain" }),
        );
    };
    let search = q.q.as_deref().unwrap_or("");
    if search.len() > MAX_SEARCH {
        return json_answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "error": format!("q is longer than {MAX_SEARCH} bytes") }),
        );
    }
    match list(&shared, &domain).await {
        Ok(all) => {
            let (names, total, page_no) = select(&all, search, q.page.unwrap_or(0));
            let jids: Vec<String> = names.iter().map(|u| format!("{u}@{domain}")).collect();
            json_answer(
                StatusCode::OK,
                serde_json::json!({ "domain": domain, "accounts": jids, "total": total,
                    "page": page_no, "page_size": PAGE_SIZE }),
            )
        }
        Err(e) => json_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": e.to_string() }),
        ),
    }
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
    let outcome = act(&shared, &fields).await;
    let status = if outcome.refused.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    json_answer(status, outcome.json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_and_pages() {
        let all: Vec<String> = (0..120).map(|i| format!("user{i:03}")).collect();
        let (p, total, page) = select(&all, "", 2);
        assert_eq!((p.len(), total, page), (20, 120, 2));
        assert_eq!(p[0], "user100");
        let (p, total, _) = select(&all, "USER01", 0);
        assert_eq!(total, 10);
        assert_eq!(p.first().map(String::as_str), Some("user010"));
        assert_eq!(select(&all, "nobody", 0), (vec![], 0, 0));
        // a page beyond the last shows the last (no overflow in the pager's page + 1)
        let (p, _, page) = select(&all, "", usize::MAX);
        assert_eq!((p.len(), page), (20, 2));
    }
}

//! `/monitor`: one row per connection (kind, remote address, JID or domain, TLS,
//! SASL mechanism, since, stanzas and bytes each way, last activity), as an HTML page
//! that sorts, filters and refreshes itself, and as `/monitor.json`.
//! `POST /monitor/close` (id, CSRF token) ends a connection's stream with
//! `<policy-violation/>`: its actor gets the stream error and closes.

use super::auth::{Auth, csrf_ok};
use super::{Shared, text};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use xmppd_actors::monitor::{ConnRow, connection, connections};
use xmppd_proto::stream::error::{Condition, StreamError};

/// Every live connection, oldest first.
pub fn rows() -> Vec<ConnRow> {
    connections().iter().map(|c| c.row()).collect()
}

pub async fn json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!(
            "{}\n",
            serde_json::json!({ "connections": rows() })
        ))
}

pub async fn page(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    // a logged-in administrator's page posts with the session's token
    let csrf = match Auth::of(&req) {
        Some(Auth::Session { csrf, .. }) => csrf,
        _ => shared.csrf.clone(),
    };
    let mut res = HttpResponse::Ok();
    if let Some(cookie) = super::token_cookie(&shared, &req) {
        res.insert_header((actix_web::http::header::SET_COOKIE, cookie));
    }
    res.content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("Cache-Control", "no-store"))
        .body(PAGE.replace("{{CSRF}}", &csrf))
}

#[derive(serde::Deserialize)]
pub struct CloseForm {
    id: u64,
    #[serde(default)]
    csrf: Option<String>,
}

pub async fn close(
    shared: web::Data<Shared>,
    req: HttpRequest,
    form: web::Form<CloseForm>,
) -> HttpResponse {
    if !csrf_ok(&shared, &req, form.csrf.as_deref()) {
        return text(StatusCode::FORBIDDEN, "missing or wrong CSRF token\n");
    }
    let Some(c) = connection(form.id) else {
        return text(StatusCode::NOT_FOUND, "no such connection\n");
    };
    let err = StreamError::with_text(Condition::PolicyViolation, "closed by the administrator");
    if c.close_with(err) {
        slog::info!(shared.ctx.log, "connection closed from the monitor"; "id" => form.id, "peer" => %c.remote);
        text(StatusCode::OK, "closing\n")
    } else {
        text(
            StatusCode::CONFLICT,
            "the connection is closing already or its actor is busy: try again\n",
        )
    }
}

/// The page: the table is filled from `/monitor.json` every 5 s; headers sort,
/// the box filters, each row has a Close button (POST with the token).
const PAGE: &str = include_str!("monitor.html");

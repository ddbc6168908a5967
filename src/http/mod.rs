//! The HTTP side, on actix-web: `GET /metrics` (Prometheus), `GET /monitor` and
//! `/monitor.json` (the connections), `POST /monitor/close`, `GET /stats` (JSON
//! counters), `GET /s2s` (each outbound queue of federation: state, length, counters),
//! and the WebAdmin: `/admin/login`, the settings pages (`settings.rs`), the accounts
//! (`accounts.rs`) and the same as JSON under `/api/`.
//!
//! It listens on `[http] address` (`127.0.0.1:5280`; `XMPPD_ADMIN=ADDR` in the
//! environment overrides it, `127.0.0.1:0` picks a free port). A non-loopback address
//! needs an administrator (`admins`), else the daemon does not start. Every request
//! must name in `Host` a loopback address, `localhost`, the listening address or a
//! hosted domain (a page of another origin whose name resolves here — DNS rebinding —
//! names itself there); a browser's `Origin` must too. Every request that changes state
//! is a POST carrying a CSRF token. The bound address is printed as `admin ADDR` and
//! written to `DATA_DIR/admin.addr`.
//!
//! `/metrics` is open to loopback peers (counts, no names). Everything else but the
//! login page needs an administrator's session (`auth.rs`) or the token the daemon
//! writes at each start to `DATA_DIR/http.token` (0600), as `Authorization: Bearer T`;
//! a browser opens `GET /monitor?token=T` (the only place a token in the URL counts),
//! whose answer sets a cookie the monitor's own requests (`/monitor*`) carry.
//!
//! Bounds: `[http] max_connections` at once, one request per connection, the request
//! head within actix-web's limits (431 beyond 128 KiB) and 5 s (408), the whole request
//! (its body included) within 5 s more (408), form bodies within 16 KiB.

mod accounts;
pub mod auth;
mod changes;
mod metrics;
mod monitor;
mod page;
mod settings;
pub mod stats;

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures::future::Either;
use std::net::SocketAddr;
use std::time::Duration;
use xmppd_actors::context::Ctx;

pub const ENV: &str = "XMPPD_ADMIN";

/// Why the HTTP side refuses to start (the daemon does not start either).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("http address {0:?} in {ENV}: {1}")]
    BadAddress(String, std::net::AddrParseError),
    #[error(
        "http address {0}: a non-loopback address needs an administrator (admins) to log in to it"
    )]
    NotLoopback(SocketAddr),
}

/// What the WebAdmin needs from the daemon shell to change settings: how the
/// configuration loads, and the log levels.
#[derive(Clone)]
pub struct Admin {
    pub loader: crate::config::Loader,
    pub logs: std::sync::Arc<crate::logging::LogControl>,
    /// Held across one reload (load, check, apply), by the SIGHUP handler and by a
    /// WebAdmin change (which also writes the overlay under it): one at a time, each
    /// reading what the previous one wrote and applied.
    pub reloading: std::sync::Arc<std::sync::Mutex<()>>,
}

impl Admin {
    /// The reload lock (a panic while it was held left nothing half-applied that a
    /// later reload would not redo: take it anyway).
    pub fn reload_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.reloading.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What every handler shares.
pub struct Shared {
    pub ctx: Ctx,
    /// Embedded in the pages, required on every POST.
    pub csrf: String,
    /// What `/monitor*` and `/stats` require (the content of `DATA_DIR/http.token`).
    token: std::sync::Arc<str>,
    registry: prometheus_client::registry::Registry,
    pub admin: Admin,
    pub sessions: std::sync::Arc<auth::Sessions>,
}

/// The file holding the token `/monitor*` and `/stats` require (0600, new at each start).
pub const TOKEN_FILE: &str = "http.token";

/// The cookie the monitor page sets from `?token=` so that its own requests carry it.
const TOKEN_COOKIE: &str = "xmppd_token";

/// How long a request may take after its head (its body included): then 408.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Write a fresh token to `DATA_DIR/http.token`, readable by the daemon's user only.
fn write_token(data_dir: &std::path::Path) -> std::io::Result<String> {
    let token = csrf_token();
    crate::reload::write_atomically(
        &data_dir.join(TOKEN_FILE),
        format!("{token}\n").as_bytes(),
        0o600,
    )?;
    Ok(token)
}

/// Paths anyone may open (the login page and its stylesheet, the index); `/metrics`
/// too, from a loopback peer.
fn is_open(path: &str) -> bool {
    matches!(path, "/" | "/admin/login" | "/admin/style.css")
}

/// A cookie's value.
pub fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(name)
                .and_then(|v| v.strip_prefix('='))
                .map(str::to_string)
        })
}

/// The token the request presents: `Authorization: Bearer T` anywhere; `?token=T` on
/// `GET /monitor` only (it sets the cookie: a URL ends up in histories, logs and
/// `Referer`s); the monitor's cookie on the monitor's paths.
fn presented_token(req: &HttpRequest) -> Option<String> {
    if let Some(t) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    {
        return Some(t.trim().to_string());
    }
    if let Some(t) = query_token(req) {
        return Some(t);
    }
    matches!(req.path(), "/monitor" | "/monitor.json" | "/monitor/close")
        .then(|| cookie(req, TOKEN_COOKIE))
        .flatten()
}

/// `token=T` in the query string of `GET /monitor` (anywhere else it counts for nothing).
fn query_token(req: &HttpRequest) -> Option<String> {
    if req.method() != actix_web::http::Method::GET || req.path() != "/monitor" {
        return None;
    }
    req.query_string()
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string)
}

/// Equal, in time independent of where they differ.
fn same_secret(given: &str, want: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.len() == want.len() && bool::from(given.as_bytes().ct_eq(want.as_bytes()))
}

/// Where the HTTP side should listen: `XMPPD_ADMIN` over `[http]`; `None` when off.
pub fn address(ctx: &Ctx) -> Result<Option<SocketAddr>, HttpError> {
    let addr = match std::env::var(ENV).ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|e| HttpError::BadAddress(v.clone(), e))?,
        None => {
            let s = ctx.settings.get();
            if !s.http.enabled {
                return Ok(None);
            }
            s.http.address
        }
    };
    if !addr.ip().is_loopback() && ctx.settings.get().admins.is_empty() {
        return Err(HttpError::NotLoopback(addr));
    }
    Ok(Some(addr))
}

/// A fresh random token (48 hex digits): the process's CSRF token, session ids.
pub fn csrf_token() -> String {
    let bytes: [u8; 24] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Start the HTTP side on the current actix system. A non-loopback address is an
/// error; an address that cannot be bound is logged and the daemon goes on without it.
pub fn start(ctx: &Ctx, log: &slog::Logger, admin: Admin) -> Result<Option<SocketAddr>, HttpError> {
    let Some(addr) = address(ctx)? else {
        return Ok(None);
    };
    let listener = match std::net::TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            slog::error!(log, "HTTP side not started"; "address" => %addr, "error" => %e);
            return Ok(None);
        }
    };
    let bound = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            slog::error!(log, "HTTP side not started"; "error" => %e);
            return Ok(None);
        }
    };
    let data_dir = ctx.settings.get().data_dir.clone();
    let token: std::sync::Arc<str> = match write_token(&data_dir) {
        Ok(t) => t.into(),
        Err(e) => {
            // without its file nobody could use the monitor: leave the HTTP side off
            slog::error!(log, "HTTP side not started: cannot write its token"; "file" => %data_dir.join(TOKEN_FILE).display(), "error" => %e);
            return Ok(None);
        }
    };
    let sessions = std::sync::Arc::new(auth::Sessions::default());
    let shared = web::Data::new(Shared {
        ctx: ctx.clone(),
        csrf: csrf_token(),
        token: token.clone(),
        registry: metrics::registry(ctx),
        admin,
        sessions: sessions.clone(),
    });
    let live = ctx.clone();
    let max = ctx.settings.get().http.max_connections.max(1);
    let server = HttpServer::new(move || {
        let token = token.clone();
        let (sessions, live) = (sessions.clone(), live.clone());
        App::new()
            .app_data(shared.clone())
            .app_data(web::FormConfig::default().limit(16 * 1024))
            .app_data(web::PayloadConfig::default().limit(16 * 1024))
            // inside the wrap_fn below (which finds the session): storage confirms it
            .wrap(actix_web::middleware::from_fn(auth::recheck))
            .wrap_fn(
                move |req, srv| match refusal(req.request(), &token, &sessions, &live) {
                    None => {
                        let call = srv.call(req);
                        Either::Left(async move {
                            match tokio::time::timeout(REQUEST_DEADLINE, call).await {
                                Ok(r) => r.map(ServiceResponse::map_into_left_body),
                                // a body that does not arrive holds no connection slot; the
                                // error becomes the 408 (the request itself went to the
                                // service: a clone of it would break actix-web's routing)
                                Err(_) => {
                                    Err(actix_web::error::ErrorRequestTimeout("request timeout\n"))
                                }
                            }
                        })
                    }
                    Some(res) => {
                        let (req, _) = req.into_parts();
                        Either::Right(std::future::ready(Ok(ServiceResponse::new(
                            req,
                            res.map_into_right_body(),
                        ))))
                    }
                },
            )
            // a resource answers other methods with 405
            .service(web::resource("/").get(index))
            .service(web::resource("/stats").get(get_stats))
            .service(web::resource("/s2s").get(get_s2s))
            .service(web::resource("/metrics").get(get_metrics))
            .service(web::resource("/monitor").get(monitor::page))
            .service(web::resource("/monitor.json").get(monitor::json))
            .service(web::resource("/monitor/close").post(monitor::close))
            .service(web::resource("/admin").get(to_settings))
            .service(web::resource("/admin/").get(to_settings))
            .service(web::resource("/admin/style.css").get(style))
            .service(
                web::resource("/admin/login")
                    .get(auth::login_form)
                    .post(auth::login),
            )
            .service(web::resource("/admin/logout").post(auth::logout))
            .service(
                web::resource(["/admin/settings", "/admin/domains", "/admin/federation"])
                    .get(settings::get_page)
                    .post(settings::post_page),
            )
            .service(
                web::resource("/admin/accounts")
                    .get(accounts::page)
                    .post(accounts::post_page),
            )
            .service(
                web::resource("/api/settings")
                    .get(settings::api_get)
                    .post(settings::api_post),
            )
            .service(
                web::resource("/api/accounts")
                    .get(accounts::api_get)
                    .post(accounts::api_post),
            )
            .service(web::resource("/api/monitor").get(monitor::json))
            .service(web::resource("/api/stats").get(get_stats))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .max_connections(max)
    .keep_alive(actix_web::http::KeepAlive::Disabled)
    .client_request_timeout(Duration::from_secs(5))
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(1)
    .disable_signals();
    let server = match listener
        .set_nonblocking(true)
        .and_then(|()| server.listen(listener))
    {
        Ok(s) => s.run(),
        Err(e) => {
            slog::error!(log, "HTTP side not started"; "address" => %addr, "error" => %e);
            return Ok(None);
        }
    };
    actix_rt::spawn(server);
    println!("admin {bound}");
    let file = ctx.settings.get().data_dir.join("admin.addr");
    if let Err(e) = std::fs::write(&file, bound.to_string()) {
        slog::warn!(log, "cannot write the HTTP address"; "file" => %file.display(), "error" => %e);
    }
    slog::info!(log, "HTTP side listening"; "address" => %bound);
    Ok(Some(bound))
}

/// The answer to a request refused before any handler sees it: `Host` must be one we
/// answer to, and a browser's `Origin`, when sent, too (no other site's page may post
/// here); then who asks is found (a session or the token, put in the request's
/// extensions as [`auth::Auth`]) and everything but the open paths needs someone (401;
/// a WebAdmin page sends a browser to the login page instead).
fn refusal(
    req: &HttpRequest,
    token: &str,
    sessions: &auth::Sessions,
    ctx: &Ctx,
) -> Option<HttpResponse> {
    use actix_web::HttpMessage;
    let settings = ctx.settings.get();
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| host_allowed(h, &settings)) {
        return Some(text(
            StatusCode::FORBIDDEN,
            "Host must name a loopback address, this server's address or a hosted domain\n",
        ));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .is_some_and(|(_, rest)| host_allowed(rest, &settings));
        if !ok {
            return Some(text(
                StatusCode::FORBIDDEN,
                "cross-site requests are refused\n",
            ));
        }
    }
    let now = std::time::Instant::now();
    let who = match auth::session_cookie(req).and_then(|id| sessions.touch(&id, now)) {
        // an administrator no more (or whose domain is gone) is logged out
        Some(auth::Auth::Session { id, jid, .. })
            if !jid
                .split_once('@')
                .is_some_and(|(u, d)| settings.is_admin(u, d) && settings.domain(d).is_some()) =>
        {
            sessions.close(&id);
            None
        }
        Some(a) => Some(a),
        None => presented_token(req)
            .filter(|t| same_secret(t, token))
            .map(|_| auth::Auth::Token {
                header: req.headers().contains_key(header::AUTHORIZATION),
            }),
    };
    let open = is_open(req.path())
        || (req.path() == "/metrics" && req.peer_addr().is_some_and(|a| a.ip().is_loopback()));
    match who {
        Some(a) => {
            req.extensions_mut().insert(a);
            None
        }
        None if open => None,
        None => Some(unauthenticated(req)),
    }
}

/// The answer to a request that needs someone and has nobody: a WebAdmin page sends
/// a browser to the login page, anything else gets 401.
pub fn unauthenticated(req: &HttpRequest) -> HttpResponse {
    if req.method() == actix_web::http::Method::GET
        && (req.path().starts_with("/admin") || req.path() == "/monitor")
    {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/admin/login"))
            .finish();
    }
    HttpResponse::build(StatusCode::UNAUTHORIZED)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"xmppd\""))
        .body(format!(
            "log in at /admin/login, or present the token in DATA_DIR/{TOKEN_FILE} (Authorization: Bearer; a browser: GET /monitor?token=)\n"
        ))
}

/// `Host` (or an origin's host) names a loopback address or `localhost`, the address
/// the HTTP side listens on, or a hosted domain.
pub fn host_allowed(host: &str, s: &xmppd_proto::config::Settings) -> bool {
    if host_is_loopback(host) {
        return true;
    }
    let name = host_name(host);
    let listen = s.http.address.ip();
    (!listen.is_unspecified()
        && name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip == listen))
        || s.domains.iter().any(|d| d.name.eq_ignore_ascii_case(name))
}

/// The name in `name[:port]` or `[v6]:port`.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    }
}

/// `name[:port]` names a loopback address or `localhost`.
pub fn host_is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Set-Cookie` for a page opened with a valid `?token=`: its own requests (the
/// table's refresh, Close) then carry the token without it in every URL.
pub fn token_cookie(shared: &Shared, req: &HttpRequest) -> Option<String> {
    query_token(req)
        .filter(|t| same_secret(t, &shared.token))
        .map(|t| format!("{TOKEN_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict"))
}

pub fn text(code: StatusCode, body: &'static str) -> HttpResponse<BoxBody> {
    HttpResponse::build(code)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(body)
}

async fn index() -> HttpResponse {
    text(
        StatusCode::OK,
        "xmppd: GET /metrics (Prometheus); the WebAdmin at /admin (administrators log in); with a login or the token of DATA_DIR/http.token: /monitor (connections), /monitor.json, /stats, /s2s, /api/settings, /api/accounts\n",
    )
}

async fn to_settings() -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/settings"))
        .finish()
}

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=3600"))
        .body(page::CSS)
}

async fn not_found() -> HttpResponse {
    text(StatusCode::NOT_FOUND, "not found\n")
}

async fn get_stats(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!("{}\n", stats::stats_json(&shared.ctx)))
}

async fn get_s2s(shared: web::Data<Shared>) -> HttpResponse {
    let queues = xmppd_actors::s2s::queues(&shared.ctx).await;
    HttpResponse::Ok()
        .content_type("application/json")
        .body(format!("{}\n", serde_json::json!({ "outbound": queues })))
}

async fn get_metrics(shared: web::Data<Shared>) -> HttpResponse {
    let Ok(body) = metrics::render(&shared.registry) else {
        slog::error!(shared.ctx.log, "metrics could not be encoded");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded\n",
        );
    };
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        ))
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::{host_allowed, host_is_loopback};
    use xmppd_proto::config::{DomainSettings, Settings};

    #[test]
    fn hosts_answered_are_loopback_the_listen_address_and_hosted_domains() {
        let mut s = Settings {
            domains: vec![DomainSettings::named("example.org")],
            ..Settings::default()
        };
        s.http.address = "192.0.2.7:5280".parse().expect("addr");
        for ok in [
            "localhost:5280",
            "192.0.2.7:5280",
            "192.0.2.7",
            "Example.ORG:5280",
        ] {
            assert!(host_allowed(ok, &s), "{ok}");
        }
        for bad in [
            "192.0.2.8:5280",
            "evil.example",
            "example.org.evil.example",
            "",
        ] {
            assert!(!host_allowed(bad, &s), "{bad}");
        }
        // listening on every address names none of them
        s.http.address = "0.0.0.0:5280".parse().expect("addr");
        assert!(!host_allowed("0.0.0.0:5280", &s));
    }

    #[test]
    fn only_loopback_hosts() {
        for ok in [
            "127.0.0.1:5280",
            "localhost",
            "[::1]:80",
            "127.9.9.9",
            "LOCALHOST:1",
        ] {
            assert!(host_is_loopback(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "10.0.0.1:5280",
            "localhost.evil.example",
            "",
            "[::2]:80",
        ] {
            assert!(!host_is_loopback(bad), "{bad}");
        }
    }
}

//! WebAdmin logins: an administrator (`admins`) logs in with the account's XMPP
//! password, checked against the stored SCRAM credentials the way SASL PLAIN checks
//! it (one key derivation, a decoy's for an unknown account, among the bounded
//! derivations) and throttled by the same per-address and per-account failure counts
//! as XMPP logins. A login gets a random session id in an `HttpOnly; SameSite=Strict`
//! cookie and a CSRF token of its own; sessions end after [`IDLE`] without a request,
//! [`LIFETIME`] after the login, or at logout. At most [`MAX_SESSIONS`] live at once.

use super::page::{self, esc};
use super::{Shared, csrf_token, same_secret};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use xmppd_actors::metrics::METRICS;
use xmppd_proto::auth::throttle::{AuthThrottle, Begin, Policy};

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// ... and this long after the login, whatever its activity.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions at once; a login beyond it ends the least recently used one.
pub const MAX_SESSIONS: usize = 64;
/// The session cookie.
pub const COOKIE: &str = "xmppd_session";

/// Who a request comes from, put in its extensions before any handler runs.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A logged-in administrator.
    Session {
        id: String,
        jid: String,
        csrf: String,
    },
    /// The token of `DATA_DIR/http.token`: in `Authorization` (a script), or in the
    /// query or the monitor's cookie (a browser, which also sends the CSRF token).
    Token { header: bool },
}

impl Auth {
    pub fn of(req: &HttpRequest) -> Option<Auth> {
        req.extensions().get::<Auth>().cloned()
    }

    /// The logged-in administrator and the session's CSRF token, for the page frame.
    pub fn who(&self) -> Option<(&str, &str)> {
        match self {
            Auth::Session { jid, csrf, .. } => Some((jid, csrf)),
            Auth::Token { .. } => None,
        }
    }
}

struct Entry {
    jid: String,
    csrf: String,
    created: Instant,
    last: Instant,
}

/// The live sessions, bounded.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Entry>>);

impl Sessions {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> R) -> R {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// A new session for `jid`: (id, CSRF token).
    pub fn open(&self, jid: &str, now: Instant) -> (String, String) {
        let (id, csrf) = (csrf_token(), csrf_token());
        self.with(|m| {
            m.retain(|_, e| live(e, now));
            while m.len() >= MAX_SESSIONS {
                let Some(oldest) = m.iter().min_by_key(|(_, e)| e.last).map(|(k, _)| k.clone())
                else {
                    break;
                };
                m.remove(&oldest);
            }
            m.insert(
                id.clone(),
                Entry {
                    jid: jid.to_string(),
                    csrf: csrf.clone(),
                    created: now,
                    last: now,
                },
            );
        });
        (id, csrf)
    }

    /// The session `id` names, if it is live (its idle time starts over).
    pub fn touch(&self, id: &str, now: Instant) -> Option<Auth> {
        self.with(|m| {
            let e = m.get_mut(id)?;
            if !live(e, now) {
                m.remove(id);
                return None;
            }
            e.last = now;
            Some(Auth::Session {
                id: id.to_string(),
                jid: e.jid.clone(),
                csrf: e.csrf.clone(),
            })
        })
    }

    pub fn close(&self, id: &str) {
        self.with(|m| m.remove(id));
    }

    /// End every session of an administrator who is one no more (or was deleted).
    pub fn close_user(&self, jid: &str) {
        self.with(|m| m.retain(|_, e| !e.jid.eq_ignore_ascii_case(jid)));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.with(|m| m.len())
    }
}

fn live(e: &Entry, now: Instant) -> bool {
    now.duration_since(e.last) < IDLE && now.duration_since(e.created) < LIFETIME
}

/// The session cookie's value in the request.
pub fn session_cookie(req: &HttpRequest) -> Option<String> {
    super::cookie(req, COOKIE)
}

/// The request carries the CSRF token its authentication needs: a session's own (form
/// field `csrf` or header `X-CSRF-Token`); with the token, the process's, except for
/// `/api/` calls that present the token in `Authorization` (scripts: no browser can
/// be made to send that header).
pub fn csrf_ok(shared: &Shared, req: &HttpRequest, form: Option<&str>) -> bool {
    let given = req
        .headers()
        .get("x-csrf-token")
        .and_then(|h| h.to_str().ok())
        .or(form)
        .unwrap_or("");
    match Auth::of(req) {
        Some(Auth::Session { csrf, .. }) => same_secret(given, &csrf),
        Some(Auth::Token { header: true }) if req.path().starts_with("/api/") => true,
        Some(Auth::Token { .. }) => same_secret(given, &shared.csrf),
        None => false,
    }
}

fn login_page(status: StatusCode, message: Option<&str>, jid: &str) -> HttpResponse {
    let msg = message
        .map(|m| format!("<div class=\"msg bad\" role=\"alert\">{}</div>", esc(m)))
        .unwrap_or_default();
    let body = format!(
        "<div class=\"login\"><section><h1>xmppd WebAdmin</h1>{msg}\
         <p class=\"hint\">Log in with the XMPP account of a server administrator.</p>\
         <form method=\"post\" action=\"/admin/login\">\
         <label>Administrator JID<input name=\"jid\" value=\"{}\" autocomplete=\"username\" required autofocus></label>\
         <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button>Log in</button></form></section></div>",
        esc(jid)
    );
    page::html(status, page::frame("Log in", "", None, &body))
}

pub async fn login_form() -> HttpResponse {
    login_page(StatusCode::OK, None, "")
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    jid: String,
    #[serde(default)]
    password: String,
}

/// Why a login failed (one answer for a wrong password, an unknown account and an
/// account that is no administrator: nothing to learn from it).
const WRONG: &str = "Wrong JID or password, or not an administrator.";

pub async fn login(
    shared: web::Data<Shared>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    let ctx = shared.ctx.clone();
    let settings = ctx.settings.get();
    let Some(ip) = req.peer_addr().map(|a| a.ip()) else {
        return login_page(StatusCode::BAD_REQUEST, Some(WRONG), "");
    };
    let jid = form.jid.trim().to_string();
    let (user, domain) = match xmpp_parsers::jid::BareJid::new(&jid) {
        Ok(b) if b.node().is_some() => (
            b.node()
                .map(|n| n.as_str().to_lowercase())
                .unwrap_or_default(),
            b.domain().as_str().to_lowercase(),
        ),
        _ => return login_page(StatusCode::FORBIDDEN, Some(WRONG), &jid),
    };
    let account = format!("{user}@{domain}");
    let policy = Policy::from(&settings.limits);
    let attempt = loop {
        match AuthThrottle::global().begin(&policy, ip, Some(&account), Instant::now()) {
            Begin::Go(a) => break a,
            Begin::Wait => tokio::time::sleep(Duration::from_millis(50)).await,
            Begin::Refused(why) => {
                METRICS
                    .auth_throttled
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                slog::warn!(ctx.log, "WebAdmin login throttled"; "peer" => %ip, "jid" => &account, "why" => %why);
                return login_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    Some(&format!("{why}: try again later.")),
                    &jid,
                );
            }
        }
    };
    let password = form.password.clone();
    let iterations = ctx
        .decoy_iterations
        .load(std::sync::atomic::Ordering::Relaxed);
    let (storage, server, d, u) = (
        ctx.storage.clone(),
        ctx.clone(),
        domain.clone(),
        user.clone(),
    );
    let verified = {
        let _permit = xmppd_actors::stream::derivation_permit().await;
        storage
            .run(move |b| {
                Ok(match b.credentials(&d, &u)? {
                    Some(creds) => creds.verify_password(&password),
                    None => {
                        // the same work as for an account, so timing tells nothing
                        let _ = server
                            .decoy
                            .decoy(&u, iterations)
                            .verify_password(&password);
                        false
                    }
                })
            })
            .await
    };
    let ok = match verified {
        Ok(ok) => ok && settings.domain(&domain).is_some() && settings.is_admin(&user, &domain),
        Err(e) => {
            slog::error!(ctx.log, "WebAdmin login: storage failed"; "error" => %e);
            drop(attempt);
            return login_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("Storage failed: try again."),
                &jid,
            );
        }
    };
    METRICS.auth("webadmin", ok);
    if !ok {
        attempt.failed(&policy, Instant::now());
        ctx.stats
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        slog::warn!(ctx.log, "WebAdmin login refused"; "peer" => %ip, "jid" => &account);
        return login_page(StatusCode::FORBIDDEN, Some(WRONG), &jid);
    }
    attempt.succeeded();
    let (id, _) = shared.sessions.open(&account, Instant::now());
    slog::info!(ctx.log, "WebAdmin login"; "peer" => %ip, "jid" => &account);
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/settings"))
        .insert_header((
            header::SET_COOKIE,
            format!(
                "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                LIFETIME.as_secs()
            ),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[derive(serde::Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: Option<String>,
}

pub async fn logout(
    shared: web::Data<Shared>,
    req: HttpRequest,
    form: web::Form<LogoutForm>,
) -> HttpResponse {
    if !csrf_ok(&shared, &req, form.csrf.as_deref()) {
        return super::text(StatusCode::FORBIDDEN, "missing or wrong CSRF token\n");
    }
    if let Some(Auth::Session { id, jid, .. }) = Auth::of(&req) {
        shared.sessions.close(&id);
        slog::info!(shared.ctx.log, "WebAdmin logout"; "jid" => &jid);
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/admin/login"))
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_stay_bounded() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = s.open("boss@example.org", t0);
        assert_eq!((id.len(), csrf.len()), (48, 48));
        assert!(matches!(
            s.touch(&id, t0 + IDLE / 2),
            Some(Auth::Session { .. })
        ));
        // idle time counts from the last request
        assert!(
            s.touch(&id, t0 + IDLE / 2 + IDLE - Duration::from_secs(1))
                .is_some()
        );
        assert!(s.touch(&id, t0 + 3 * IDLE).is_none());
        assert!(s.touch("not-a-session", t0).is_none());
        // a flood of logins keeps at most MAX_SESSIONS, the least recently used go
        let first = s.open("a@example.org", t0).0;
        for i in 0..MAX_SESSIONS + 10 {
            s.open("b@example.org", t0 + Duration::from_millis(i as u64 + 1));
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.touch(&first, t0 + Duration::from_secs(1)).is_none());
        s.close_user("B@example.org");
        assert_eq!(s.len(), 0);
    }
}

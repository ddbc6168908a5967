//! WebAdmin logins: an administrator (`admins`) logs in with the account's XMPP
//! password, checked against the stored SCRAM credentials the way SASL PLAIN checks
//! it (one key derivation, a decoy's for an unknown account, among the bounded
//! derivations) and throttled by the same per-address and per-account failure counts
//! as XMPP logins. A login gets a random session id in an `HttpOnly; SameSite=Strict`
//! cookie and a CSRF token of its own; sessions end after [`IDLE`] without a request,
//! [`LIFETIME`] after the login, or at logout. At most [`MAX_SESSIONS`] live at once.
//! A session remembers a fingerprint of the account's stored credentials and compares
//! it with storage at most every [`RECHECK`] ([`recheck`], before the handler runs): an
//! administrator deleted (by any path: WebAdmin, XEP-0133, XEP-0077, the command line)
//! or whose password changed is logged out.

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
/// A session's account is looked up again after this long (a request waits for it).
pub const RECHECK: Duration = Duration::from_secs(2);

/// What a session remembers of the credentials it logged in with: changed by a password
/// change, gone with the account.
pub type Fingerprint = [u8; 32];

/// The fingerprint of stored credentials (a hash of the stored keys and their salt).
pub fn fingerprint(c: &xmppd_proto::auth::scram::Credentials) -> Fingerprint {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        &c.salt[..],
        &c.iterations.to_be_bytes()[..],
        &c.sha1.stored_key[..],
        &c.sha256.stored_key[..],
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

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
    fingerprint: Fingerprint,
    /// When storage last confirmed the fingerprint.
    checked: Instant,
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

    /// A new session for `jid`, logged in with credentials of `fingerprint`: (id, CSRF token).
    pub fn open(&self, jid: &str, fingerprint: Fingerprint, now: Instant) -> (String, String) {
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
                    fingerprint,
                    checked: now,
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

    /// The fingerprint of session `id` when storage must confirm it again (its last
    /// check is [`RECHECK`] old).
    pub fn due(&self, id: &str, now: Instant) -> Option<Fingerprint> {
        self.with(|m| {
            m.get(id)
                .filter(|e| now.duration_since(e.checked) >= RECHECK)
                .map(|e| e.fingerprint)
        })
    }

    /// Storage confirmed session `id`'s fingerprint at `now`.
    pub fn confirmed(&self, id: &str, now: Instant) {
        self.with(|m| {
            if let Some(e) = m.get_mut(id) {
                e.checked = now;
            }
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

/// Before a session's request runs: when [`RECHECK`] has passed since storage last
/// confirmed it, look the account up again; gone or with other credentials, the
/// session ends and the request is answered as one without a session.
pub async fn recheck(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<
    actix_web::dev::ServiceResponse<actix_web::body::EitherBody<impl actix_web::body::MessageBody>>,
    actix_web::Error,
> {
    let session = match Auth::of(req.request()) {
        Some(Auth::Session { id, jid, .. }) => Some((id, jid)),
        _ => None,
    };
    let shared = req.app_data::<web::Data<Shared>>().cloned();
    if let (Some((id, jid)), Some(shared)) = (session, shared) {
        let now = Instant::now();
        if let Some(fp) = shared.sessions.due(&id, now) {
            let Some((user, domain)) = jid
                .split_once('@')
                .map(|(u, d)| (u.to_string(), d.to_string()))
            else {
                shared.sessions.close(&id);
                let res = super::unauthenticated(req.request());
                return Ok(req.into_response(res).map_into_right_body());
            };
            let stored = shared
                .ctx
                .storage
                .run(move |b| b.credentials(&domain, &user))
                .await;
            match stored {
                Ok(Some(c)) if fingerprint(&c) == fp => shared.sessions.confirmed(&id, now),
                Ok(_) => {
                    shared.sessions.close(&id);
                    slog::info!(shared.ctx.log, "WebAdmin session ended: the account is gone or its password changed"; "jid" => &jid);
                    req.extensions_mut().remove::<Auth>();
                    let res = super::unauthenticated(req.request());
                    return Ok(req.into_response(res).map_into_right_body());
                }
                Err(e) => {
                    slog::error!(shared.ctx.log, "WebAdmin: storage failed checking a session"; "error" => %e);
                    let res = super::text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage failed: try again\n",
                    );
                    return Ok(req.into_response(res).map_into_right_body());
                }
            }
        }
    }
    next.call(req).await.map(|r| r.map_into_left_body())
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
                    Some(creds) => creds
                        .verify_password(&password)
                        .then(|| fingerprint(&creds)),
                    None => {
                        // the same work as for an account, so timing tells nothing
                        let _ = server
                            .decoy
                            .decoy(&u, iterations)
                            .verify_password(&password);
                        None
                    }
                })
            })
            .await
    };
    let ok = match verified {
        Ok(fp) => {
            fp.filter(|_| settings.domain(&domain).is_some() && settings.is_admin(&user, &domain))
        }
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
    METRICS.auth("webadmin", ok.is_some());
    let Some(fp) = ok else {
        attempt.failed(&policy, Instant::now());
        ctx.stats
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        slog::warn!(ctx.log, "WebAdmin login refused"; "peer" => %ip, "jid" => &account);
        return login_page(StatusCode::FORBIDDEN, Some(WRONG), &jid);
    };
    attempt.succeeded();
    let (id, _) = shared.sessions.open(&account, fp, Instant::now());
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
        let (id, csrf) = s.open("boss@example.org", [0; 32], t0);
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
        let first = s.open("a@example.org", [0; 32], t0).0;
        for i in 0..MAX_SESSIONS + 10 {
            s.open(
                "b@example.org",
                [0; 32],
                t0 + Duration::from_millis(i as u64 + 1),
            );
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.touch(&first, t0 + Duration::from_secs(1)).is_none());
        s.close_user("B@example.org");
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn storage_confirms_a_session_every_recheck_interval() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, _) = s.open("boss@example.org", [7; 32], t0);
        assert_eq!(s.due(&id, t0 + RECHECK / 2), None);
        assert_eq!(s.due(&id, t0 + RECHECK), Some([7; 32]));
        s.confirmed(&id, t0 + RECHECK);
        assert_eq!(s.due(&id, t0 + RECHECK + RECHECK / 2), None);
        assert_eq!(s.due("nobody", t0 + 2 * RECHECK), None);
    }

    #[test]
    fn a_password_change_changes_the_fingerprint() {
        use xmppd_proto::auth::scram::Credentials;
        let a = Credentials::derive_with_salt("secret", b"salt-salt-salt!!", 4096, false);
        let same = Credentials::derive_with_salt("secret", b"salt-salt-salt!!", 4096, false);
        let other = Credentials::derive_with_salt("secret2", b"salt-salt-salt!!", 4096, false);
        let resalted = Credentials::derive_with_salt("secret", b"another-salt-16b", 4096, false);
        assert_eq!(fingerprint(&a), fingerprint(&same));
        assert_ne!(fingerprint(&a), fingerprint(&other));
        assert_ne!(fingerprint(&a), fingerprint(&resalted));
    }
}

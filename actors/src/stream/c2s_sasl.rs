//! SASL on a client stream (RFC 6120 §6): the mechanisms offered, the claimed identity
//! looked up in storage before rsasl runs, the failure counts and the throttle.

use super::c2s::{ClientStream, parts};
use super::core::{Connection, StreamCore};
use actix::prelude::*;
use base64::Engine;
use minidom::Element;
use std::sync::atomic::Ordering;
use xmpp_parsers::jid::BareJid;
use xmppd_proto::auth::sasl::{self, Claim, Exchange, Failure, Mech, Step};
use xmppd_proto::auth::scram_messages::{scram_client_final_ok, scram_client_first_ok};
use xmppd_proto::auth::throttle::{self, AuthThrottle};
use xmppd_proto::ns;
use xmppd_proto::stream::error::{Condition, StreamError};

/// A SASL exchange in progress.
pub struct SaslRun {
    mech: Mech,
    exchange: Exchange,
    /// Client messages fed so far.
    steps: u32,
}

/// A SASL element during negotiation.
pub(super) fn element(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    match el.name() {
        "auth" => auth(conn, el, ctx),
        "response" => response(conn, &el, ctx),
        "abort" => {
            let Some((core, c)) = parts(conn) else { return };
            if c.sasl.is_some() {
                failure(core, c, Failure::Aborted)
            } else {
                core.fail(StreamError::new(Condition::PolicyViolation))
            }
        }
        _ => conn
            .core
            .fail(StreamError::new(Condition::UnsupportedStanzaType)),
    }
}

/// Answer a failed step, count it, and end the stream after too many.
pub(super) fn failure(core: &mut StreamCore, c: &mut ClientStream, f: Failure) {
    c.sasl = None;
    c.failures += 1;
    core.ctx.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
    slog::warn!(core.log, # "XMPPI", "authentication failed"; "condition" => f.as_str(), "attempt" => c.failures);
    core.send(&format!(
        "<failure xmlns='{}'><{}/></failure>",
        ns::SASL,
        f.as_str()
    ));
    check_failures(core, c);
}

/// RFC 6120 §6.4.5: after too many retries the stream ends with not-authorized.
pub(super) fn check_failures(core: &mut StreamCore, c: &ClientStream) {
    if c.failures >= core.settings.auth.max_failures.max(1) {
        core.fail(StreamError::with_text(
            Condition::NotAuthorized,
            "too many failed authentication attempts",
        ));
    }
}

fn throttle_policy(core: &StreamCore) -> throttle::Policy {
    throttle::Policy::from(&core.settings.limits)
}

/// Refuse an attempt early when this address or account failed too often lately.
pub(super) fn throttled(core: &StreamCore, account: Option<&str>) -> bool {
    let p = throttle_policy(core);
    match AuthThrottle::global().check(&p, core.peer.ip(), account, std::time::Instant::now()) {
        Ok(()) => false,
        Err(why) => {
            slog::warn!(core.log, # "XMPPI", "authentication refused"; "reason" => %why, "account" => account.unwrap_or(""));
            true
        }
    }
}

/// A wrong password or proof: count it for the address and the account.
pub(super) fn note_auth_failure(core: &StreamCore, account: Option<&str>) {
    let p = throttle_policy(core);
    AuthThrottle::global().failed(&p, core.peer.ip(), account, std::time::Instant::now());
}

fn auth(conn: &mut Connection, el: Element, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    if c.auth.is_some() {
        return core.fail(StreamError::with_text(
            Condition::PolicyViolation,
            "already authenticated",
        ));
    }
    if !c.auth_allowed(core) {
        core.send(&format!(
            "<failure xmlns='{}'><encryption-required/></failure>",
            ns::SASL
        ));
        return;
    }
    // a new <auth/> aborts the exchange in progress
    c.sasl = None;
    let offered = sasl::offered(c.offer(core));
    let Some(mech) = el
        .attr("mechanism")
        .and_then(Mech::parse)
        .filter(|m| offered.contains(m))
    else {
        return failure(core, c, Failure::InvalidMechanism);
    };
    let initial = match decode(&el.text()) {
        Ok(Some(d)) => d,
        Ok(None) if mech == Mech::Anonymous => Vec::new(),
        // no initial response: ask for it with an empty challenge
        Ok(None) => {
            core.send(&format!("<challenge xmlns='{}'/>", ns::SASL));
            c.sasl_pending = Some(mech);
            return;
        }
        Err(f) => return failure(core, c, f),
    };
    begin(conn, mech, initial, ctx);
}

/// Look up the claimed identity, then run the first step.
fn begin(conn: &mut Connection, mech: Mech, initial: Vec<u8>, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    if is_scram(mech) && !scram_client_first_ok(&initial) {
        return failure(core, c, Failure::MalformedRequest);
    }
    let claim = match sasl::claim(mech, &initial) {
        Ok(cl) => cl,
        Err(f) => return failure(core, c, f),
    };
    let domain = c.domain_name().to_string();
    let user = match &claim {
        Claim::User(u) => Some(nodeprep(u)),
        Claim::Anonymous => None,
    };
    c.sasl_account = user.clone().flatten().map(|u| format!("{u}@{domain}"));
    if throttled(core, c.sasl_account.as_deref()) {
        return failure(core, c, Failure::TemporaryAuthFailure);
    }
    core.busy = true;
    let storage = core.ctx.storage.clone();
    let lookup = async move {
        match user {
            Some(Some(u)) => storage.run(move |b| b.credentials(&domain, &u)).await,
            _ => Ok(None),
        }
    };
    lookup
        .into_actor(conn)
        .map(move |res, act, ctx| {
            act.core.busy = false;
            if act.core.closing() {
                return;
            }
            if let Some((core, c)) = parts(act) {
                started(core, c, mech, &claim, &initial, res);
            }
            act.pump(ctx);
        })
        .wait(ctx);
}

/// The credentials are known (or known to be missing): start rsasl and feed it the
/// initial response.
fn started(
    core: &mut StreamCore,
    c: &mut ClientStream,
    mech: Mech,
    claim: &Claim,
    initial: &[u8],
    creds: Result<Option<xmppd_proto::auth::scram::Credentials>, crate::storage::StorageError>,
) {
    let creds = match creds {
        Ok(cr) => cr,
        Err(e) => {
            slog::error!(core.log, "credential lookup failed"; "error" => %e);
            return failure(core, c, Failure::TemporaryAuthFailure);
        }
    };
    let cb = core
        .tls
        .clone()
        .filter(|_| mech.is_plus())
        .unwrap_or_default();
    let domain = c.domain_name().to_string();
    let iterations = core.settings.auth.scram_iterations;
    let decoy = &core.ctx.decoy;
    let start = guarded(|| Exchange::start(mech, claim, &domain, creds, cb, decoy, iterations));
    match start.unwrap_or(Err(Failure::MalformedRequest)) {
        Ok(exchange) => {
            c.sasl = Some(SaslRun {
                mech,
                exchange,
                steps: 0,
            });
            step(core, c, initial);
        }
        Err(f) => failure(core, c, f),
    }
}

fn response(conn: &mut Connection, el: &Element, ctx: &mut Context<Connection>) {
    let Some((core, c)) = parts(conn) else { return };
    let data = match decode(&el.text()) {
        Ok(d) => d.unwrap_or_default(),
        Err(f) => return failure(core, c, f),
    };
    if let Some(mech) = c.sasl_pending.take() {
        return begin(conn, mech, data, ctx);
    }
    if c.sasl.is_none() {
        return core.fail(StreamError::with_text(
            Condition::PolicyViolation,
            "no authentication in progress",
        ));
    }
    step(core, c, &data);
}

fn step(core: &mut StreamCore, c: &mut ClientStream, data: &[u8]) {
    let Some(run) = c.sasl.as_mut() else {
        return;
    };
    let run_mech = run.mech;
    run.steps += 1;
    if is_scram(run_mech) && run.steps == 2 && !scram_client_final_ok(data) {
        return failure(core, c, Failure::MalformedRequest);
    }
    let step = match guarded(|| run.exchange.step(data)) {
        Some(s) => s,
        None => {
            slog::error!(core.log, # "XMPPI", "the SASL library panicked on client data"; "mechanism" => run_mech.name());
            Step::Failure(Failure::MalformedRequest)
        }
    };
    match step {
        Step::Challenge(ch) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(ch);
            core.send(&format!(
                "<challenge xmlns='{}'>{b64}</challenge>",
                ns::SASL
            ));
        }
        Step::Success(who, extra) => {
            c.sasl = None;
            let body = match extra {
                Some(d) if !d.is_empty() => base64::engine::general_purpose::STANDARD.encode(d),
                Some(_) => "=".into(),
                None => String::new(),
            };
            slog::debug!(core.log, # "XMPPI", "authenticated"; "user" => &who.username, "domain" => c.domain_name(), "mechanism" => run_mech.name());
            if let Some(a) = c.sasl_account.take() {
                AuthThrottle::global().succeeded(&a);
            }
            core.send(&format!("<success xmlns='{}'>{body}</success>", ns::SASL));
            c.auth = Some(who);
            core.restart();
        }
        Step::Failure(f) => {
            if f == Failure::NotAuthorized {
                let account = c.sasl_account.take();
                note_auth_failure(core, account.as_deref());
            }
            failure(core, c, f)
        }
    }
}

/// Run library code on peer data; a panic in it becomes `None` instead of taking the
/// connection actor down without a word to the client (rsasl 2.3 panics on some
/// malformed SCRAM messages).
pub(super) fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

fn is_scram(m: Mech) -> bool {
    !matches!(m, Mech::Plain | Mech::Anonymous)
}

/// Decode SASL data: `None` for an absent initial response, `Some(empty)` for `=`.
fn decode(text: &str) -> Result<Option<Vec<u8>>, Failure> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    if t == "=" {
        return Ok(Some(Vec::new()));
    }
    let compact: String = t.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map(Some)
        .map_err(|_| Failure::IncorrectEncoding)
}

/// Normalise a username the way a JID's local part is (nodeprep); `None` if invalid.
pub fn nodeprep(user: &str) -> Option<String> {
    let bare = BareJid::new(&format!("{user}@x.invalid")).ok()?;
    let node = bare.node()?.to_string();
    // the local part must not smuggle in a domain or resource
    (!node.is_empty()).then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_turns_a_panic_into_none() {
        assert_eq!(guarded(|| 1), Some(1));
        let r: Option<()> = guarded(|| panic!("library bug"));
        assert_eq!(r, None);
    }

    #[test]
    fn sasl_data_decoding() {
        assert_eq!(decode(""), Ok(None));
        assert_eq!(decode(" = "), Ok(Some(Vec::new())));
        assert_eq!(decode("YW Jj\n"), Ok(Some(b"abc".to_vec())));
        assert_eq!(decode("!!"), Err(Failure::IncorrectEncoding));
    }
}

//! SASL on a client stream (RFC 6120 §6): the mechanisms offered, the claimed identity
//! looked up in storage before rsasl runs, the failure counts and the throttle.

use super::c2s::{ClientStream, parts};
use super::core::{Connection, StreamCore};
use crate::metrics::METRICS;
use actix::prelude::*;
use base64::Engine;
use minidom::Element;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use xmppd_proto::auth::sasl::{self, Claim, Exchange, Failure, Mech, Step};
use xmppd_proto::auth::scram::Credentials;
use xmppd_proto::auth::scram_messages::{scram_client_final_ok, scram_client_first_ok};
use xmppd_proto::auth::throttle::{self, Attempt, AuthThrottle, Begin};
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
    METRICS.auth(c.tried.map_or("other", Mech::name), false);
    refuse(core, c, f);
}

/// An attempt the failure throttle refused: counted once, as throttled (not also as a
/// failure of its mechanism: no password was checked).
fn throttled(core: &mut StreamCore, c: &mut ClientStream) {
    METRICS.auth_throttled.fetch_add(1, Ordering::Relaxed);
    refuse(core, c, Failure::TemporaryAuthFailure);
}

/// Answer `<failure/>` and count it against the stream's retries.
fn refuse(core: &mut StreamCore, c: &mut ClientStream, f: Failure) {
    c.sasl = None;
    // an attempt that did not get to a password check gives its place back
    c.attempt = None;
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

pub(super) fn throttle_policy(core: &StreamCore) -> throttle::Policy {
    throttle::Policy::from(&core.settings.limits)
}

/// How long an attempt waits when attempts in flight hold the throttle's budget.
pub(super) const THROTTLE_WAIT: Duration = Duration::from_millis(100);

/// How often it waits before it is refused (`temporary-auth-failure`): 10 s. Places
/// are held only while the server checks a password or proof (never across a round
/// trip to the client), so waiting ends as fast as the server works; the bound is for a
/// server too busy to get there.
const MAX_THROTTLE_WAITS: u32 = 100;

/// Is this address or account refused for now (too many failures)? No place is taken.
fn blocked(core: &StreamCore, account: Option<&str>) -> bool {
    let p = throttle_policy(core);
    match AuthThrottle::global().check(&p, core.peer.ip(), account, Instant::now()) {
        Ok(()) => false,
        Err(why) => {
            slog::warn!(core.log, # "XMPPI", "authentication refused"; "reason" => %why, "account" => account.unwrap_or(""));
            true
        }
    }
}

/// Reserve a place in the failure throttle for an attempt from this address for
/// `account`: `Ok(Some)` to go ahead, `Ok(None)` to ask again after [`THROTTLE_WAIT`],
/// `Err` when refused.
pub(super) fn reserve(
    core: &StreamCore,
    account: Option<&str>,
) -> Result<Option<Attempt>, throttle::Throttled> {
    let p = throttle_policy(core);
    match AuthThrottle::global().begin(&p, core.peer.ip(), account, Instant::now()) {
        Begin::Go(a) => Ok(Some(a)),
        Begin::Wait => Ok(None),
        Begin::Refused(why) => {
            slog::warn!(core.log, # "XMPPI", "authentication refused"; "reason" => %why, "account" => account.unwrap_or(""));
            Err(why)
        }
    }
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
    // a new <auth/> aborts the exchange in progress, with its place in the throttle
    c.sasl = None;
    c.sasl_pending = None;
    c.attempt = None;
    c.tried = None;
    let offered = sasl::offered(c.offer(core));
    let Some(mech) = el
        .attr("mechanism")
        .and_then(Mech::parse)
        .filter(|m| offered.contains(m))
    else {
        return failure(core, c, Failure::InvalidMechanism);
    };
    c.tried = Some(mech);
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
    // RFC 5802 §6: gs2 flag 'y' says "I bind channels, but you seem not to". This stream
    // offered a -PLUS mechanism, so someone between us removed it: fail.
    if is_scram(mech)
        && !mech.is_plus()
        && initial.starts_with(b"y,")
        && sasl::offered(c.offer(core)).iter().any(|m| m.is_plus())
    {
        slog::warn!(core.log, # "XMPPI", "SCRAM channel-binding downgrade refused: the client did not see our -PLUS mechanisms"; "mechanism" => mech.name());
        return failure(core, c, Failure::NotAuthorized);
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
    // the credentials are read after this: an account removed later is not this one
    c.auth_at = Some(Instant::now());
    if mech == Mech::Plain {
        // PLAIN's password is checked right after the lookup: the attempt takes its
        // place in the throttle now, for work the server does, not a round trip
        match reserve(core, c.sasl_account.as_deref()) {
            Ok(Some(a)) => {
                c.attempt = Some(a);
                c.throttle_waits = 0;
            }
            Ok(None) => {
                if !wait_turn(core, c) {
                    return throttled(core, c);
                }
                ctx.run_later(THROTTLE_WAIT, move |act, ctx| {
                    act.core.busy = false;
                    if !act.core.closing() {
                        begin(act, mech, initial, ctx);
                    }
                    act.pump(ctx);
                });
                return;
            }
            Err(_) => return throttled(core, c),
        }
    } else if blocked(core, c.sasl_account.as_deref()) {
        // SCRAM takes its place when the proof arrives (see `response`)
        return throttled(core, c);
    }
    core.busy = true;
    let storage = core.ctx.storage.clone();
    // PLAIN is checked with a key derivation: the whole exchange runs on the blocking
    // pool with the lookup, not on the thread that serves other connections
    let plain = (mech == Mech::Plain).then(|| PlainJob {
        server: core.ctx.clone(),
        domain: domain.clone(),
        claim: claim.clone(),
        initial: initial.clone(),
        iterations: core.ctx.decoy_iterations.load(Ordering::Relaxed),
    });
    let lookup = async move {
        // a PLAIN check is a key derivation: a few at a time, so that a flood of them
        // does not hold the blocking pool every storage call needs
        let _permit = match plain {
            Some(_) => Some(derivation_permit().await),
            None => None,
        };
        storage
            .run(move |b| {
                let creds = match user {
                    Some(Some(u)) => b.credentials(&domain, &u)?,
                    _ => None,
                };
                Ok(match plain {
                    Some(job) => Lookup::Plain(job.run(creds)),
                    None => Lookup::Creds(creds),
                })
            })
            .await
    };
    lookup
        .into_actor(conn)
        .map(move |res, act, ctx| {
            act.core.busy = false;
            if act.core.closing() {
                return;
            }
            if let Some((core, c)) = parts(act) {
                match res {
                    Ok(Lookup::Creds(creds)) => started(core, c, mech, &claim, &initial, creds),
                    Ok(Lookup::Plain(step)) => apply(core, c, mech, step),
                    Err(e) => {
                        slog::error!(core.log, "credential lookup failed"; "error" => %e);
                        failure(core, c, Failure::TemporaryAuthFailure)
                    }
                }
            }
            act.pump(ctx);
        })
        .wait(ctx);
}

/// What the blocking pool brings back.
enum Lookup {
    /// The claimed account's credentials (none: no such account).
    Creds(Option<Credentials>),
    /// PLAIN's only step, already run.
    Plain(Step),
}

/// A PLAIN exchange to run off the actor thread.
struct PlainJob {
    server: crate::context::Ctx,
    domain: String,
    claim: Claim,
    initial: Vec<u8>,
    iterations: u32,
}

impl PlainJob {
    fn run(self, creds: Option<Credentials>) -> Step {
        let cb = Default::default();
        let decoy = &self.server.decoy;
        let step = guarded(|| {
            Exchange::start(
                Mech::Plain,
                &self.claim,
                &self.domain,
                creds,
                cb,
                decoy,
                self.iterations,
            )
            .map(|mut ex| ex.step(&self.initial))
        });
        match step {
            Some(Ok(s)) => s,
            Some(Err(f)) => Step::Failure(f),
            None => Step::Failure(Failure::MalformedRequest),
        }
    }
}

/// The credentials are known (or known to be missing): start rsasl and feed it the
/// initial response.
fn started(
    core: &mut StreamCore,
    c: &mut ClientStream,
    mech: Mech,
    claim: &Claim,
    initial: &[u8],
    creds: Option<Credentials>,
) {
    let cb = core
        .tls
        .clone()
        .filter(|_| mech.is_plus())
        .unwrap_or_default();
    let domain = c.domain_name().to_string();
    let iterations = core.ctx.decoy_iterations.load(Ordering::Relaxed);
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
    let Some(run) = c.sasl.as_ref() else {
        return core.fail(StreamError::with_text(
            Condition::PolicyViolation,
            "no authentication in progress",
        ));
    };
    // the SCRAM proof is checked now: the attempt holds its place in the throttle only
    // for that check, not while the client takes its time
    if is_scram(run.mech) && run.steps == 1 && c.attempt.is_none() {
        match reserve(core, c.sasl_account.as_deref()) {
            Ok(Some(a)) => {
                c.attempt = Some(a);
                c.throttle_waits = 0;
            }
            Ok(None) => {
                if !wait_turn(core, c) {
                    return throttled(core, c);
                }
                let el = el.clone();
                ctx.run_later(THROTTLE_WAIT, move |act, ctx| {
                    act.core.busy = false;
                    if !act.core.closing() {
                        response(act, &el, ctx);
                    }
                    act.pump(ctx);
                });
                return;
            }
            Err(_) => return throttled(core, c),
        }
    }
    step(core, c, &data);
}

/// Wait once more for attempts in flight to end: `false` once this attempt has waited
/// [`MAX_THROTTLE_WAITS`] times (it is then refused, as if throttled). Marks the stream
/// busy while it waits.
pub(super) fn wait_turn(core: &mut StreamCore, c: &mut ClientStream) -> bool {
    c.throttle_waits += 1;
    if c.throttle_waits > MAX_THROTTLE_WAITS {
        c.throttle_waits = 0;
        return false;
    }
    core.busy = true;
    true
}

/// Key derivations (PLAIN, legacy authentication) running at once, at most.
fn derivations() -> &'static tokio::sync::Semaphore {
    static D: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// A place among the key derivations running at once.
pub async fn derivation_permit() -> Option<tokio::sync::SemaphorePermit<'static>> {
    derivations().acquire().await.ok()
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
    apply(core, c, run_mech, step);
}

/// Answer what a step produced.
fn apply(core: &mut StreamCore, c: &mut ClientStream, mech: Mech, step: Step) {
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
            slog::debug!(core.log, # "XMPPI", "authenticated"; "user" => &who.username, "domain" => c.domain_name(), "mechanism" => mech.name());
            c.sasl_account = None;
            if let Some(a) = c.attempt.take() {
                a.succeeded();
            }
            core.send(&format!("<success xmlns='{}'>{body}</success>", ns::SASL));
            METRICS.auth(mech.name(), true);
            core.conn.set_mechanism(mech.name());
            core.conn
                .set_identity(&format!("{}@{}", who.username, c.domain_name()));
            c.auth = Some(who);
            core.authenticated();
            core.restart();
        }
        Step::Failure(f) => {
            if f == Failure::NotAuthorized
                && let Some(a) = c.attempt.take()
            {
                a.failed(&throttle_policy(core), Instant::now());
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

/// Normalise a username the way a JID's local part is (nodeprep); `None` if invalid
/// (shared with in-band registration).
pub use xmppd_proto::xep::register::nodeprep;

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

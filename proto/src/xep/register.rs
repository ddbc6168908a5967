//! XEP-0077 in-band registration, without actors: the forms the server sends, the
//! requests it reads (legacy fields or a `jabber:x:data` form), the decisions on a
//! sign-up and a password change, and the per-address registration limit.

use crate::auth::throttle::address_key;
use crate::config::{DomainSettings, LimitSettings};
use crate::ns;
use crate::stanza::{ErrorCondition, set_attr};
use minidom::Element;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use xmpp_parsers::jid::BareJid;

/// A refusal: the stanza error and a text for the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub cond: ErrorCondition,
    pub text: &'static str,
}

const fn refuse(cond: ErrorCondition, text: &'static str) -> Refusal {
    Refusal { cond, text }
}

/// The username and password a set carries (from the legacy fields or the data form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub username: Option<String>,
    pub password: Option<String>,
}

/// An iq set in `jabber:iq:register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRequest {
    /// `<remove/>`: cancel the registration (§3.2).
    Remove,
    /// Register, or change the password (§3.1, §3.3).
    Fields(Fields),
}

/// Read an iq set's `<query xmlns='jabber:iq:register'/>`.
pub fn parse_set(query: &Element) -> Result<SetRequest, Refusal> {
    if query.get_child("remove", ns::IQ_REGISTER).is_some() {
        // §3.2: <remove/> must be the only child
        if query.children().count() != 1 {
            return Err(refuse(
                ErrorCondition::BadRequest,
                "<remove/> must be the only child",
            ));
        }
        return Ok(SetRequest::Remove);
    }
    if let Some(x) = query.get_child("x", ns::DATA_FORMS) {
        return form_fields(x).map(SetRequest::Fields);
    }
    let text = |n: &str| query.get_child(n, ns::IQ_REGISTER).map(|e| e.text());
    Ok(SetRequest::Fields(Fields {
        username: text("username"),
        password: text("password"),
    }))
}

/// The username and password of a submitted data form (XEP-0004), whose `FORM_TYPE`,
/// when given, must be `jabber:iq:register`.
fn form_fields(x: &Element) -> Result<Fields, Refusal> {
    if x.attr("type") != Some("submit") {
        return Err(refuse(
            ErrorCondition::BadRequest,
            "a registration form is submitted with type='submit'",
        ));
    }
    let mut f = Fields::default();
    for field in x.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let value = field
            .get_child("value", ns::DATA_FORMS)
            .map(|v| v.text())
            .unwrap_or_default();
        match field.attr("var") {
            Some("FORM_TYPE") if value != ns::IQ_REGISTER => {
                return Err(refuse(
                    ErrorCondition::BadRequest,
                    "FORM_TYPE must be jabber:iq:register",
                ));
            }
            Some("username") => f.username = Some(value),
            Some("password") => f.password = Some(value),
            _ => {}
        }
    }
    Ok(f)
}

/// Normalise a username the way a JID's local part is (nodeprep); `None` when it is
/// empty or not a valid local part.
pub fn nodeprep(user: &str) -> Option<String> {
    let bare = BareJid::new(&format!("{user}@x.invalid")).ok()?;
    let node = bare.node()?.to_string();
    // the local part must not smuggle in a domain or resource
    (!node.is_empty()).then_some(node)
}

/// What a valid sign-up creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signup {
    /// The username, nodeprepped.
    pub username: String,
    pub password: String,
}

/// Where a client stream stands when it asks to sign up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignupContext {
    /// TLS is up on the stream.
    pub tls: bool,
    /// The stream authenticated already.
    pub authenticated: bool,
    /// The stream created an account already.
    pub registered_here: bool,
}

/// May a client stream sign up on this domain at all (before looking at the fields)?
/// A registration carries the password in the clear: it follows the rules of SASL
/// PLAIN (TLS, or `plain_without_tls` on a domain that does not require TLS).
pub fn signup_allowed(d: Option<&DomainSettings>, s: SignupContext) -> Result<(), Refusal> {
    let Some(d) = d.filter(|d| d.auto_signup) else {
        // §3.1: a host that does not offer in-band registration
        return Err(refuse(
            ErrorCondition::ServiceUnavailable,
            "in-band registration is not offered on this domain",
        ));
    };
    if s.authenticated {
        return Err(refuse(
            ErrorCondition::ServiceUnavailable,
            "already authenticated",
        ));
    }
    if !cleartext_ok(d, s.tls) {
        return Err(refuse(
            ErrorCondition::PolicyViolation,
            "TLS is required before registration",
        ));
    }
    if s.registered_here {
        // §3.1.1: one registration per stream
        return Err(refuse(
            ErrorCondition::NotAcceptable,
            "an account was registered on this stream already: authenticate",
        ));
    }
    Ok(())
}

/// A password may be sent in the clear on this stream (the rule PLAIN follows).
pub fn cleartext_ok(d: &DomainSettings, tls: bool) -> bool {
    tls || (d.plain_without_tls && !d.require_tls)
}

/// The stream feature is offered: sign-up is on and would be accepted on this stream.
pub fn offer_feature(d: Option<&DomainSettings>, tls: bool) -> bool {
    d.is_some_and(|d| d.auto_signup && cleartext_ok(d, tls))
}

/// Check a sign-up's fields: a valid username (`not-acceptable` when missing,
/// `jid-malformed` when nodeprep refuses it) and a non-empty password.
pub fn signup(f: Fields) -> Result<Signup, Refusal> {
    let user = f.username.unwrap_or_default();
    if user.trim().is_empty() {
        return Err(refuse(
            ErrorCondition::NotAcceptable,
            "a username is required",
        ));
    }
    let Some(username) = nodeprep(&user) else {
        return Err(refuse(
            ErrorCondition::JidMalformed,
            "the username is not a valid JID local part",
        ));
    };
    let password = f.password.unwrap_or_default();
    if password.is_empty() {
        return Err(refuse(
            ErrorCondition::NotAcceptable,
            "a password is required",
        ));
    }
    Ok(Signup { username, password })
}

/// A password change on a stream without TLS where PLAIN is not offered either (§3.3).
pub const NOT_SAFE: Refusal = refuse(
    ErrorCondition::NotAuthorized,
    "a password is only changed over TLS here",
);

/// A request for a domain no longer hosted (removed by a reload).
pub const NOT_HOSTED: Refusal = refuse(
    ErrorCondition::ServiceUnavailable,
    "the domain is not hosted here",
);

/// Check a password change by `account` (its username): allowed by the domain's
/// setting, for this account only, with a non-empty new password (§3.3: never a null
/// password). Returns the new password.
pub fn password_change(account: &str, allowed: bool, f: Fields) -> Result<String, Refusal> {
    if !allowed {
        return Err(refuse(
            ErrorCondition::NotAllowed,
            "password changes are not allowed on this domain",
        ));
    }
    match f.username.as_deref().map(nodeprep) {
        None => {
            return Err(refuse(
                ErrorCondition::BadRequest,
                "the username is required",
            ));
        }
        Some(Some(u)) if u == account => {}
        Some(_) => {
            return Err(refuse(
                ErrorCondition::BadRequest,
                "the username is not this account's",
            ));
        }
    }
    match f.password {
        Some(p) if !p.is_empty() => Ok(p),
        _ => Err(refuse(
            ErrorCondition::NotAcceptable,
            "a new password is required",
        )),
    }
}

fn text_el(name: &str, text: &str) -> Element {
    let mut e = Element::bare(name, ns::IQ_REGISTER);
    if !text.is_empty() {
        e.append_text(text);
    }
    e
}

fn form_field(ty: &str, var: &str, label: &str) -> Element {
    let mut f = Element::bare("field", ns::DATA_FORMS);
    set_attr(&mut f, "type", ty);
    set_attr(&mut f, "var", var);
    if !label.is_empty() {
        set_attr(&mut f, "label", label);
    }
    f
}

const INSTRUCTIONS: &str = "Choose a username and password to register with this server.";

/// The registration form for an unregistered entity (§3.1): instructions, the legacy
/// fields, and the same as a data form (§4).
pub fn form() -> Element {
    let mut q = Element::bare("query", ns::IQ_REGISTER);
    q.append_child(text_el("instructions", INSTRUCTIONS));
    q.append_child(text_el("username", ""));
    q.append_child(text_el("password", ""));
    let mut x = Element::bare("x", ns::DATA_FORMS);
    set_attr(&mut x, "type", "form");
    let mut title = Element::bare("title", ns::DATA_FORMS);
    title.append_text("Account registration");
    x.append_child(title);
    let mut instr = Element::bare("instructions", ns::DATA_FORMS);
    instr.append_text(INSTRUCTIONS);
    x.append_child(instr);
    let mut ft = form_field("hidden", "FORM_TYPE", "");
    let mut v = Element::bare("value", ns::DATA_FORMS);
    v.append_text(ns::IQ_REGISTER);
    ft.append_child(v);
    x.append_child(ft);
    for (ty, var, label) in [
        ("text-single", "username", "Username"),
        ("text-private", "password", "Password"),
    ] {
        let mut f = form_field(ty, var, label);
        f.append_child(Element::bare("required", ns::DATA_FORMS));
        x.append_child(f);
    }
    q.append_child(x);
    q
}

/// What a registered (authenticated) entity is told (§3.1): `<registered/>`, its
/// username, and an empty password (the server does not know it).
pub fn registered(username: &str) -> Element {
    let mut q = Element::bare("query", ns::IQ_REGISTER);
    q.append_child(text_el(
        "instructions",
        "You are registered. Send a new password to change it, or <remove/> to delete the account.",
    ));
    q.append_child(Element::bare("registered", ns::IQ_REGISTER));
    q.append_child(text_el("username", username));
    q.append_child(text_el("password", ""));
    q
}

/// The registration limit in force (read from the live settings on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Registrations per address per window; 0: no limit.
    pub per_ip: u32,
    pub window: Duration,
}

impl From<&LimitSettings> for LimitPolicy {
    fn from(l: &LimitSettings) -> Self {
        LimitPolicy {
            per_ip: l.registrations_per_ip,
            window: Duration::from_secs(l.registration_window.max(1)),
        }
    }
}

/// Addresses the limit remembers at most; beyond it the oldest windows are forgotten.
pub const LIMIT_ENTRIES: usize = 65_536;

/// Registrations counted per client address (IPv6 per /64), in fixed windows.
#[derive(Debug, Default)]
pub struct RegistrationLimit {
    counts: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl RegistrationLimit {
    /// The process-wide limit every connection uses.
    pub fn global() -> &'static RegistrationLimit {
        static T: OnceLock<RegistrationLimit> = OnceLock::new();
        T.get_or_init(RegistrationLimit::default)
    }

    /// Take one registration for `ip`: `false` when its window's budget is spent.
    pub fn take(&self, p: &LimitPolicy, ip: IpAddr, now: Instant) -> bool {
        if p.per_ip == 0 {
            return true;
        }
        let key = address_key(ip);
        let mut m = match self.counts.lock() {
            Ok(g) => g,
            Err(poison) => poison.into_inner(),
        };
        if !m.contains_key(&key) && m.len() >= LIMIT_ENTRIES {
            m.retain(|_, (_, since)| now < *since + p.window);
            if m.len() >= LIMIT_ENTRIES {
                // the oldest window goes: a flood of addresses cannot grow memory
                if let Some(oldest) = m.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k) {
                    m.remove(&oldest);
                }
            }
        }
        let e = m.entry(key).or_insert((0, now));
        if now >= e.1 + p.window {
            *e = (0, now);
        }
        if e.0 >= p.per_ip {
            return false;
        }
        e.0 += 1;
        true
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        match self.counts.lock() {
            Ok(g) => g.len(),
            Err(p) => p.into_inner().len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(s: &str) -> Element {
        s.parse().expect("xml")
    }

    fn domain(auto_signup: bool) -> DomainSettings {
        DomainSettings {
            auto_signup,
            ..DomainSettings::named("example.org")
        }
    }

    const FRESH: SignupContext = SignupContext {
        tls: true,
        authenticated: false,
        registered_here: false,
    };

    #[test]
    fn legacy_fields_and_data_forms_are_read_alike() {
        let legacy = query(
            "<query xmlns='jabber:iq:register'><username>bill</username><password>Calliope</password></query>",
        );
        let form = query(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>jabber:iq:register</value></field>\
             <field var='username'><value>bill</value></field>\
             <field var='password'><value>Calliope</value></field></x></query>",
        );
        let want = SetRequest::Fields(Fields {
            username: Some("bill".into()),
            password: Some("Calliope".into()),
        });
        assert_eq!(parse_set(&legacy), Ok(want.clone()));
        assert_eq!(parse_set(&form), Ok(want));
        let other_form = query(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>urn:other</value></field></x></query>",
        );
        assert_eq!(
            parse_set(&other_form).map_err(|r| r.cond),
            Err(ErrorCondition::BadRequest)
        );
    }

    #[test]
    fn remove_must_be_alone() {
        let ok = query("<query xmlns='jabber:iq:register'><remove/></query>");
        assert_eq!(parse_set(&ok), Ok(SetRequest::Remove));
        let extra =
            query("<query xmlns='jabber:iq:register'><remove/><username>bill</username></query>");
        assert_eq!(
            parse_set(&extra).map_err(|r| r.cond),
            Err(ErrorCondition::BadRequest)
        );
    }

    #[test]
    fn signup_needs_a_valid_name_and_a_password() {
        let f = |u: Option<&str>, p: Option<&str>| Fields {
            username: u.map(Into::into),
            password: p.map(Into::into),
        };
        assert_eq!(
            signup(f(Some("Bill"), Some("pw"))),
            Ok(Signup {
                username: "bill".into(),
                password: "pw".into()
            })
        );
        let cond = |r: Result<Signup, Refusal>| r.map_err(|e| e.cond).err();
        assert_eq!(
            cond(signup(f(None, Some("pw")))),
            Some(ErrorCondition::NotAcceptable)
        );
        assert_eq!(
            cond(signup(f(Some(""), Some("pw")))),
            Some(ErrorCondition::NotAcceptable)
        );
        for bad in ["a@b", "a/b", "a b\u{7}", "a\"b:c<"] {
            assert_eq!(
                cond(signup(f(Some(bad), Some("pw")))),
                Some(ErrorCondition::JidMalformed),
                "{bad}"
            );
        }
        assert_eq!(
            cond(signup(f(Some("bill"), None))),
            Some(ErrorCondition::NotAcceptable)
        );
        assert_eq!(
            cond(signup(f(Some("bill"), Some("")))),
            Some(ErrorCondition::NotAcceptable)
        );
    }

    #[test]
    fn signup_follows_the_domain_setting_and_the_plain_rules() {
        let cond = |d: Option<&DomainSettings>, s| signup_allowed(d, s).map_err(|e| e.cond).err();
        assert_eq!(cond(Some(&domain(true)), FRESH), None);
        assert_eq!(
            cond(Some(&domain(false)), FRESH),
            Some(ErrorCondition::ServiceUnavailable)
        );
        assert_eq!(cond(None, FRESH), Some(ErrorCondition::ServiceUnavailable));
        let clear = SignupContext {
            tls: false,
            ..FRESH
        };
        // a domain requiring TLS: never over a clear stream
        assert_eq!(
            cond(Some(&domain(true)), clear),
            Some(ErrorCondition::PolicyViolation)
        );
        let mut lax = domain(true);
        lax.require_tls = false;
        // TLS not required, but PLAIN is not offered in the clear either
        assert_eq!(
            cond(Some(&lax), clear),
            Some(ErrorCondition::PolicyViolation)
        );
        assert!(!offer_feature(Some(&lax), false));
        lax.plain_without_tls = true;
        assert_eq!(cond(Some(&lax), clear), None);
        assert!(offer_feature(Some(&lax), false));
        assert!(offer_feature(Some(&domain(true)), true));
        assert!(!offer_feature(Some(&domain(false)), true));
        let again = SignupContext {
            registered_here: true,
            ..FRESH
        };
        assert_eq!(
            cond(Some(&domain(true)), again),
            Some(ErrorCondition::NotAcceptable)
        );
    }

    #[test]
    fn password_change_rules() {
        let f = |u: Option<&str>, p: Option<&str>| Fields {
            username: u.map(Into::into),
            password: p.map(Into::into),
        };
        assert_eq!(
            password_change("bill", true, f(Some("Bill"), Some("new"))),
            Ok("new".into())
        );
        let cond = |r: Result<String, Refusal>| r.map_err(|e| e.cond).err();
        assert_eq!(
            cond(password_change("bill", false, f(Some("bill"), Some("new")))),
            Some(ErrorCondition::NotAllowed)
        );
        assert_eq!(
            cond(password_change("bill", true, f(Some("alice"), Some("new")))),
            Some(ErrorCondition::BadRequest)
        );
        assert_eq!(
            cond(password_change("bill", true, f(None, Some("new")))),
            Some(ErrorCondition::BadRequest)
        );
        // §3.3: an empty password never replaces the existing one
        assert_eq!(
            cond(password_change("bill", true, f(Some("bill"), Some("")))),
            Some(ErrorCondition::NotAcceptable)
        );
    }

    #[test]
    fn forms_carry_the_fields() {
        let q = form();
        for n in ["instructions", "username", "password"] {
            assert!(q.get_child(n, ns::IQ_REGISTER).is_some(), "{n}");
        }
        let x = q.get_child("x", ns::DATA_FORMS).expect("data form");
        let vars: Vec<_> = x.children().filter_map(|f| f.attr("var")).collect();
        assert_eq!(vars, ["FORM_TYPE", "username", "password"]);
        let r = registered("bill");
        assert!(r.get_child("registered", ns::IQ_REGISTER).is_some());
        assert_eq!(
            r.get_child("username", ns::IQ_REGISTER).map(|u| u.text()),
            Some("bill".into())
        );
    }

    #[test]
    fn the_limit_counts_per_address_and_window() {
        let l = RegistrationLimit::default();
        let p = LimitPolicy {
            per_ip: 2,
            window: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "2001:db8::1".parse().expect("ip");
        let b2: IpAddr = "2001:db8::ffff".parse().expect("ip");
        assert!(l.take(&p, a, t0));
        assert!(l.take(&p, a, t0));
        assert!(!l.take(&p, a, t0), "third in the window");
        // one /64 is one address
        assert!(l.take(&p, b, t0));
        assert!(l.take(&p, b2, t0));
        assert!(!l.take(&p, b, t0));
        // the next window starts over
        assert!(l.take(&p, a, t0 + Duration::from_secs(61)));
        let off = LimitPolicy { per_ip: 0, ..p };
        assert!((0..10).all(|_| l.take(&off, a, t0)));
    }
}

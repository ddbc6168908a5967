//! XEP-0077 in-band registration, without actors: the forms the server sends, the
//! requests it reads (legacy fields or a `jabber:x:data` form), the decisions on a
//! sign-up, a password change and a removal. The limits are in `register_limit`.

use crate::config::DomainSettings;
use crate::im::account::{Effect, State};
use crate::ns;
use crate::stanza::{ErrorCondition, set_attr};
use minidom::Element;
use xmpp_parsers::jid::{BareJid, Jid};

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
    if is_reserved(&username) {
        // the names SASL ANONYMOUS hands out: taken by definition
        return Err(refuse(ErrorCondition::Conflict, "the username is taken"));
    }
    let password = f.password.unwrap_or_default();
    if password.trim().is_empty() {
        return Err(refuse(
            ErrorCondition::NotAcceptable,
            "a password is required",
        ));
    }
    Ok(Signup { username, password })
}

/// A self-registration may not take the name of a configured administrator: admin
/// rights go by name, so whoever created `boss@domain` (not yet created, or deleted)
/// would become an administrator. Refused with `not-allowed`; the administrators'
/// add-user command and `xmppd account add` still create such accounts.
pub fn not_an_admin_name(
    settings: &crate::config::Settings,
    username: &str,
    domain: &str,
) -> Result<(), Refusal> {
    if settings.is_admin(username, domain) {
        return Err(refuse(
            ErrorCondition::NotAllowed,
            "this username is reserved for an administrator",
        ));
    }
    Ok(())
}

/// The prefix of the names SASL ANONYMOUS gives its sessions
/// (`crate::auth::sasl`): nobody may register one.
pub const ANONYMOUS_PREFIX: &str = "anon-";

/// A (nodeprepped) username reserved for anonymous sessions.
pub fn is_reserved(username: &str) -> bool {
    username.starts_with(ANONYMOUS_PREFIX)
}

/// A sign-up before authentication is for the stream's own domain: no `to`, or `to`
/// naming that domain. Anything else (another hosted domain, a gateway) is refused
/// with `service-unavailable`: this stream cannot reach it yet.
pub fn signup_addressed(to: Option<&str>, domain: &str) -> Result<(), Refusal> {
    let Some(to) = to else { return Ok(()) };
    let ours = match to.parse::<Jid>() {
        Ok(j) => j.node().is_none() && j.resource().is_none() && j.domain().as_str() == domain,
        Err(_) => false,
    };
    if ours {
        Ok(())
    } else {
        Err(refuse(
            ErrorCondition::ServiceUnavailable,
            "only this stream's domain takes registrations before authentication",
        ))
    }
}

/// What cancelling a registration sends once the delete has committed (§3.2): for each
/// contact what removing it from the roster sends (RFC 6121 §2.5.2: `unsubscribe`,
/// `unsubscribed`, unavailable presence), and `unsubscribed` for each subscription
/// request still waiting. `state` is not changed: nothing is sent if the delete fails.
pub fn removal_routes(state: &State) -> Vec<Element> {
    let mut s = state.clone();
    let mut out = Vec::new();
    let contacts: Vec<String> = s.roster.keys().cloned().collect();
    for c in contacts {
        if let Ok(fx) = s.remove_contact(&c) {
            // the routed stanzas only: the stored roster goes with the account
            out.extend(fx.into_iter().filter_map(|e| match e {
                Effect::Route(el) => Some(el),
                _ => None,
            }));
        }
    }
    for contact in std::mem::take(&mut s.pending).into_keys() {
        let mut p = Element::bare("presence", ns::CLIENT);
        set_attr(&mut p, "from", s.bare.as_str());
        set_attr(&mut p, "to", &contact);
        set_attr(&mut p, "type", "unsubscribed");
        out.push(p);
    }
    out
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
        Some(p) if !p.trim().is_empty() => Ok(p),
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
    fn an_administrators_name_cannot_be_self_registered() {
        let s = crate::config::Settings {
            admins: vec!["Boss@Example.org".into()],
            ..Default::default()
        };
        let r = not_an_admin_name(&s, "boss", "example.org").expect_err("reserved");
        assert_eq!(r.cond, ErrorCondition::NotAllowed);
        // the same name at another domain, and other names, are free
        assert!(not_an_admin_name(&s, "boss", "other.org").is_ok());
        assert!(not_an_admin_name(&s, "bossy", "example.org").is_ok());
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
    fn anonymous_names_and_blank_passwords_are_refused() {
        let f = |u: &str, p: &str| Fields {
            username: Some(u.into()),
            password: Some(p.into()),
        };
        let cond = |r: Result<Signup, Refusal>| r.map_err(|e| e.cond).err();
        for name in ["anon-0123456789abcdef", "ANON-x", "anon-"] {
            assert_eq!(
                cond(signup(f(name, "pw"))),
                Some(ErrorCondition::Conflict),
                "{name}"
            );
        }
        assert_eq!(cond(signup(f("anonymous", "pw"))), None);
        for blank in [" ", "\t\n", "   "] {
            assert_eq!(
                cond(signup(f("bill", blank))),
                Some(ErrorCondition::NotAcceptable)
            );
            assert_eq!(
                password_change("bill", true, f("bill", blank)).map_err(|e| e.cond),
                Err(ErrorCondition::NotAcceptable)
            );
        }
        // a password with spaces around real characters is fine
        assert_eq!(cond(signup(f("bill", " pw "))), None);
    }

    #[test]
    fn a_signup_is_for_the_streams_own_domain() {
        assert!(signup_addressed(None, "example.org").is_ok());
        assert!(signup_addressed(Some("example.org"), "example.org").is_ok());
        for other in [
            "other.example",
            "irc.example.org",
            "bill@example.org",
            "example.org/res",
            "@@",
        ] {
            assert_eq!(
                signup_addressed(Some(other), "example.org").map_err(|r| r.cond),
                Err(ErrorCondition::ServiceUnavailable),
                "{other}"
            );
        }
    }

    #[test]
    fn removal_routes_cancel_every_subscription_and_change_nothing() {
        use crate::im::roster::{Item, Sub};
        let mut s = State::new(BareJid::new("alice@a.test").expect("jid"));
        s.exists = Some(true);
        let mut both = Item::new("bob@b.test");
        both.sub = Sub::Both;
        s.roster.insert(both.jid.clone(), both);
        s.pending
            .insert("carol@c.test".into(), "<presence type='subscribe'/>".into());
        let before = (s.roster.len(), s.pending.len(), s.ver);
        let routes = removal_routes(&s);
        let summary: Vec<_> = routes
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e.attr("to").unwrap_or(""),
                    e.attr("type").unwrap_or("available")
                )
            })
            .collect();
        assert!(
            summary.contains(&"bob@b.test unsubscribe".to_string()),
            "{summary:?}"
        );
        assert!(
            summary.contains(&"bob@b.test unsubscribed".to_string()),
            "{summary:?}"
        );
        assert!(
            summary.contains(&"carol@c.test unsubscribed".to_string()),
            "{summary:?}"
        );
        assert!(routes.iter().all(|e| {
            e.attr("from") == Some("alice@a.test")
                || e.attr("from")
                    .is_some_and(|f| f.starts_with("alice@a.test/"))
        }));
        assert_eq!(
            (s.roster.len(), s.pending.len(), s.ver),
            before,
            "unchanged"
        );
    }
}

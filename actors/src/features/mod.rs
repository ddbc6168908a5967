//! The feature table: every iq handler, stream feature and disco#info entry of the
//! server, registered once.
//!
//! A [`Feature`] says, for one protocol feature, which iq requests it answers (keyed by
//! the entity addressed, the payload's namespace and element, the iq type and who may
//! ask), where each runs ([`IqHandler`]: in place from the request alone, in the account
//! actor with the account's state, or in the stream negotiation), what it adds to the
//! stream features, what it advertises in disco#info, and its taps on the messages
//! and presence sessions send and receive. Whether it is enabled is
//! decided per domain; a disabled feature neither answers nor is advertised, so disco
//! can only list what works.
//!
//! Adding a feature is one module in this folder and one line in [`FEATURES`].

pub mod adhoc;
pub mod bind;
pub mod blocking;
pub mod disco;
pub mod legacy_auth;
pub mod legacy_session;
pub mod offline;
pub mod ping;
pub mod private;
pub mod register;
pub mod roster;
pub mod taps;
pub mod vcard;
pub mod version;

use crate::account::Account;
use crate::signals::Signal;
use crate::stream::Connection;
use actix::Context;
use minidom::Element;
use xmppd_proto::config::{DomainSettings, Settings};
use xmppd_proto::stanza::ErrorCondition;

/// Every feature the server has, in the order disco#info lists their entries.
pub static FEATURES: &[Feature] = &[
    disco::FEATURE,
    ping::FEATURE,
    version::FEATURE,
    legacy_auth::FEATURE,
    bind::FEATURE,
    roster::FEATURE,
    legacy_session::FEATURE,
    offline::FEATURE,
    blocking::FEATURE,
    vcard::FEATURE,
    private::FEATURE,
    register::SIGNUP,
    register::FEATURE,
    adhoc::FEATURE,
];

/// The entity an iq is addressed to (and whose disco#info lists a feature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// The stream being negotiated, before a resource is bound (no `to`).
    Stream,
    /// The client's own session: no `to`, or its own bare JID, answered in place.
    Session,
    /// An account's bare JID.
    Account,
    /// A hosted domain: the server itself.
    Server,
}

/// Who may send a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Only the account's own resources (roster, blocklist, private XML).
    Owner,
    /// Any entity.
    Anyone,
}

/// Which iq types a route takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Types {
    Get,
    Set,
    GetSet,
}

impl Types {
    fn takes(self, get: bool) -> bool {
        match self {
            Types::Get => get,
            Types::Set => !get,
            Types::GetSet => true,
        }
    }
}

/// The answer of a handler that needs nothing but the request: a result payload (or an
/// empty result), or the error to reply with.
pub type IqAnswer = Result<Option<Element>, IqError>;

/// A stanza error condition, with an optional text for the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IqError {
    pub cond: ErrorCondition,
    pub text: Option<&'static str>,
}

impl From<ErrorCondition> for IqError {
    fn from(cond: ErrorCondition) -> Self {
        IqError { cond, text: None }
    }
}

/// What a pure handler gets.
pub struct IqCall<'a> {
    pub iq: &'a Element,
    pub payload: &'a Element,
    pub get: bool,
    pub env: &'a Env<'a>,
}

/// Who asked an account-state handler.
pub enum Caller {
    /// One of the account's resources.
    Own(String),
    /// Another entity, by a routed signal (the reply is routed back to it).
    Other(Signal),
}

/// Where a handler runs.
#[derive(Clone, Copy)]
pub enum IqHandler {
    /// Answered from the request alone, wherever it is reached (session, registry,
    /// account actor).
    Pure(fn(&IqCall<'_>) -> IqAnswer),
    /// Carried out by the account actor, with the account's state and storage.
    Account(fn(&mut Account, Caller, Element, &mut Context<Account>)),
    /// Carried out by the stream negotiation before a resource is bound.
    Stream(fn(&mut Connection, Element, &mut Context<Connection>)),
}

/// One iq route of a feature.
pub struct IqRoute {
    pub to: Entity,
    pub ns: &'static str,
    pub element: &'static str,
    pub types: Types,
    pub from: Who,
    pub handler: IqHandler,
}

/// What a feature may add to a client stream's `<stream:features/>`.
pub struct StreamFeature {
    /// Offered before authentication (when authentication is allowed) or after it.
    pub after_auth: bool,
    pub xml: fn(&Env<'_>) -> &'static str,
}

/// One protocol feature.
pub struct Feature {
    pub name: &'static str,
    /// Whether the feature is on for a domain.
    pub enabled: fn(&Env<'_>) -> bool,
    /// disco#info `var`s, by the entity whose disco#info lists them.
    pub disco: &'static [(Entity, &'static str)],
    pub iq: &'static [IqRoute],
    pub stream: Option<StreamFeature>,
    /// Taps on what client sessions send and are delivered ([`taps`]).
    pub taps: &'static [taps::Tap],
}

/// Always on.
pub fn always(_: &Env<'_>) -> bool {
    true
}

/// What handlers and `enabled` see: the live settings and the domain at hand.
pub struct Env<'a> {
    pub settings: &'a Settings,
    pub domain: Option<&'a DomainSettings>,
    /// Whether the client stream being negotiated runs TLS; `None` outside the
    /// negotiation (sessions, accounts, the registry).
    pub tls: Option<bool>,
    /// Where the domains of the trusted components attached now are kept (the server's
    /// disco#items reads it, only when asked).
    pub components: Option<&'a crate::context::Live<Vec<String>>>,
}

impl<'a> Env<'a> {
    /// The environment for `domain` (its settings, when it is hosted).
    pub fn new(settings: &'a Settings, domain: &str) -> Self {
        Env {
            settings,
            domain: settings.domain(domain),
            tls: None,
            components: None,
        }
    }

    /// The environment of a client stream being negotiated.
    pub fn stream(settings: &'a Settings, domain: &str, tls: bool) -> Self {
        Env {
            tls: Some(tls),
            ..Env::new(settings, domain)
        }
    }

    /// The same, knowing where to find which components are attached (see
    /// [`Env::components`]).
    pub fn with_components(self, components: &'a crate::context::Live<Vec<String>>) -> Self {
        Env {
            components: Some(components),
            ..self
        }
    }
}

/// The route for an iq request: the first enabled feature that takes requests of this
/// type for this payload, addressed to `to`, from `from`.
pub fn lookup(env: &Env<'_>, to: Entity, from: Who, iq: &Element) -> Option<&'static IqRoute> {
    let get = match iq.attr("type") {
        Some("get") => true,
        Some("set") => false,
        _ => return None,
    };
    let payload = single_payload(iq)?;
    let (ns, name) = (payload.ns(), payload.name());
    FEATURES
        .iter()
        .filter(|f| (f.enabled)(env))
        .flat_map(|f| f.iq.iter())
        .find(|r| {
            r.to == to
                && r.types.takes(get)
                && (r.from == Who::Anyone || from == Who::Owner)
                && r.element == name
                && r.ns == ns
        })
}

/// Answer an iq with a pure handler; `None` when no pure handler takes it. Results and
/// errors are never answered.
pub fn answer(env: &Env<'_>, to: Entity, from: Who, iq: &Element) -> Option<Element> {
    run_pure(lookup(env, to, from, iq)?, env, iq)
}

/// Run a route already looked up for `iq`, if its handler is pure.
pub fn run_pure(route: &IqRoute, env: &Env<'_>, iq: &Element) -> Option<Element> {
    let IqHandler::Pure(f) = route.handler else {
        return None;
    };
    let call = IqCall {
        iq,
        payload: single_payload(iq)?,
        get: iq.attr("type") == Some("get"),
        env,
    };
    Some(reply(iq, f(&call)))
}

/// Serve an iq addressed to `to` with the pure handlers: their answer, `bad-request` for
/// a get or set without exactly one payload, `service-unavailable` when no pure handler
/// takes it (RFC 6120 §8.2.3), nothing for results and errors.
pub fn serve(env: &Env<'_>, to: Entity, from: Who, iq: &Element) -> Option<Element> {
    if !matches!(iq.attr("type"), Some("get") | Some("set")) {
        return None;
    }
    if single_payload(iq).is_none() {
        return xmppd_proto::stanza::error_reply(
            iq,
            ErrorCondition::BadRequest,
            Some("an iq get or set carries exactly one child"),
        );
    }
    answer(env, to, from, iq)
        .or_else(|| xmppd_proto::stanza::error_reply(iq, ErrorCondition::ServiceUnavailable, None))
}

/// The reply stanza for a handler's answer.
pub fn reply(iq: &Element, a: IqAnswer) -> Element {
    match a {
        Ok(p) => xmppd_proto::stanza::iq_result(iq, p),
        Err(e) => xmppd_proto::stanza::error_reply(iq, e.cond, e.text)
            .unwrap_or_else(|| xmppd_proto::stanza::iq_result(iq, None)),
    }
}

/// The disco#info features of `entity` on this domain: exactly those of enabled features.
pub fn advertised(env: &Env<'_>, entity: Entity) -> Vec<&'static str> {
    let mut vars: Vec<&'static str> = Vec::new();
    for (_, v) in FEATURES
        .iter()
        .filter(|f| (f.enabled)(env))
        .flat_map(|f| f.disco.iter())
        .filter(|(e, _)| *e == entity)
    {
        if !vars.contains(v) {
            vars.push(v);
        }
    }
    vars
}

/// What enabled features add to a client stream's features, before or after
/// authentication.
pub fn stream_features(env: &Env<'_>, after_auth: bool) -> String {
    FEATURES
        .iter()
        .filter(|f| (f.enabled)(env))
        .filter_map(|f| f.stream.as_ref())
        .filter(|s| s.after_auth == after_auth)
        .map(|s| (s.xml)(env))
        .collect()
}

/// The one child element of an iq get/set, if there is exactly one.
pub fn single_payload(iq: &Element) -> Option<&Element> {
    let mut it = iq.children();
    let first = it.next()?;
    it.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmppd_proto::ns;

    fn settings() -> Settings {
        let mut s = Settings::default();
        if s.domains.is_empty() {
            s.domains.push(DomainSettings::named("example.org"));
        }
        s
    }

    fn iq(s: &str) -> Element {
        s.parse().expect("xml")
    }

    #[test]
    fn every_route_of_an_enabled_feature_is_found_and_nothing_else() {
        let s = settings();
        let env = Env::new(&s, &s.domains[0].name.clone());
        for f in FEATURES.iter().filter(|f| (f.enabled)(&env)) {
            for r in f.iq {
                let ty = if r.types == Types::Set { "set" } else { "get" };
                let el = iq(&format!(
                    "<iq xmlns='jabber:client' type='{ty}' id='1'><{} xmlns='{}'/></iq>",
                    r.element, r.ns
                ));
                let found = lookup(&env, r.to, Who::Owner, &el).expect(f.name);
                assert_eq!((found.ns, found.element), (r.ns, r.element), "{}", f.name);
            }
        }
        let unknown = iq("<iq xmlns='jabber:client' type='get' id='1'><x xmlns='urn:nope'/></iq>");
        for e in [
            Entity::Stream,
            Entity::Session,
            Entity::Account,
            Entity::Server,
        ] {
            assert!(lookup(&env, e, Who::Owner, &unknown).is_none());
        }
    }

    #[test]
    fn owner_only_routes_refuse_others() {
        let s = settings();
        let env = Env::new(&s, &s.domains[0].name.clone());
        let roster = iq(
            "<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
        );
        assert!(lookup(&env, Entity::Account, Who::Owner, &roster).is_some());
        assert!(lookup(&env, Entity::Account, Who::Anyone, &roster).is_none());
        // anyone may read a vCard, only the owner may change it
        let get =
            iq("<iq xmlns='jabber:client' type='get' id='1'><vCard xmlns='vcard-temp'/></iq>");
        let set =
            iq("<iq xmlns='jabber:client' type='set' id='1'><vCard xmlns='vcard-temp'/></iq>");
        assert!(lookup(&env, Entity::Account, Who::Anyone, &get).is_some());
        assert!(lookup(&env, Entity::Account, Who::Anyone, &set).is_none());
        assert!(lookup(&env, Entity::Account, Who::Owner, &set).is_some());
    }

    #[test]
    fn disco_lists_exactly_the_enabled_features() {
        let mut s = settings();
        let domain = s.domains[0].name.clone();
        let vars = advertised(&Env::new(&s, &domain), Entity::Server);
        for v in [
            ns::DISCO_INFO,
            ns::DISCO_ITEMS,
            ns::PING,
            ns::VERSION,
            "msgoffline",
            "urn:xmpp:blocking",
            ns::VCARD,
            ns::PRIVATE,
        ] {
            assert!(vars.contains(&v), "{v} missing from {vars:?}");
        }
        let account = advertised(&Env::new(&s, &domain), Entity::Account);
        assert_eq!(account, vec![ns::DISCO_INFO, ns::VCARD]);
        // legacy authentication: a stream feature only while it is enabled
        s.auth.legacy_auth = true;
        assert!(stream_features(&Env::new(&s, &domain), false).contains(ns::IQ_AUTH_FEATURE));
        s.auth.legacy_auth = false;
        assert!(!stream_features(&Env::new(&s, &domain), false).contains(ns::IQ_AUTH_FEATURE));
        let el =
            iq("<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:auth'/></iq>");
        assert!(lookup(&Env::new(&s, &domain), Entity::Stream, Who::Owner, &el).is_none());
    }

    #[test]
    fn registration_is_offered_where_it_works() {
        let mut s = settings();
        let domain = s.domains[0].name.clone();
        let get = iq(
            "<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:register'/></iq>",
        );
        // for the domain's users: password change and removal always answer
        let env = Env::new(&s, &domain);
        assert!(advertised(&env, Entity::Server).contains(&ns::IQ_REGISTER));
        assert!(!advertised(&env, Entity::Account).contains(&ns::IQ_REGISTER));
        assert!(lookup(&env, Entity::Server, Who::Owner, &get).is_some());
        assert!(
            lookup(&env, Entity::Server, Who::Anyone, &get).is_none(),
            "not for other servers' users"
        );
        assert!(lookup(&env, Entity::Account, Who::Anyone, &get).is_none());
        // before authentication only with Auto Signup, the feature only where a password
        // may be sent
        let feature = "<register xmlns='http://jabber.org/features/iq-register'/>";
        assert!(
            lookup(
                &Env::stream(&s, &domain, true),
                Entity::Stream,
                Who::Owner,
                &get
            )
            .is_none()
        );
        assert!(!stream_features(&Env::stream(&s, &domain, true), false).contains(feature));
        s.domains[0].auto_signup = true;
        assert!(
            lookup(
                &Env::stream(&s, &domain, true),
                Entity::Stream,
                Who::Owner,
                &get
            )
            .is_some()
        );
        assert!(stream_features(&Env::stream(&s, &domain, true), false).contains(feature));
        assert!(!stream_features(&Env::stream(&s, &domain, false), false).contains(feature));
        assert!(!stream_features(&Env::stream(&s, &domain, true), true).contains(feature));
    }

    #[test]
    fn disco_items_come_from_the_sources_once_each() {
        use xmppd_proto::config::DiscoItem;
        let mut s = settings();
        let item = |jid: &str, node: Option<&str>| DiscoItem {
            jid: jid.into(),
            name: None,
            node: node.map(Into::into),
        };
        s.domains[0].disco_items = vec![
            item("a.example", None),
            item("a.example", Some("n")),
            item("a.example", None),
        ];
        let domain = s.domains[0].name.clone();
        let got = disco::items(&Env::new(&s, &domain));
        let rooms = DiscoItem {
            jid: format!("conference.{domain}"),
            name: Some("Chat rooms".into()),
            node: None,
        };
        assert_eq!(
            got,
            [rooms, item("a.example", None), item("a.example", Some("n"))]
        );
        // without the room service, only the administrator's items
        s.muc.enabled = false;
        let got = disco::items(&Env::new(&s, &domain));
        assert_eq!(got, [item("a.example", None), item("a.example", Some("n"))]);
        assert!(disco::items(&Env::new(&s, "not-hosted.example")).is_empty());
    }

    #[test]
    fn a_pure_answer_is_a_reply_to_the_request() {
        let s = settings();
        let env = Env::new(&s, &s.domains[0].name.clone());
        let ping = iq(
            "<iq xmlns='jabber:client' type='get' id='p' from='a@x/r' to='x'><ping xmlns='urn:xmpp:ping'/></iq>",
        );
        let r = answer(&env, Entity::Server, Who::Anyone, &ping).expect("answered");
        assert_eq!(r.attr("type"), Some("result"));
        assert_eq!(r.attr("to"), Some("a@x/r"));
        assert_eq!(r.attr("id"), Some("p"));
        let result =
            iq("<iq xmlns='jabber:client' type='result' id='p'><ping xmlns='urn:xmpp:ping'/></iq>");
        assert!(answer(&env, Entity::Server, Who::Anyone, &result).is_none());
    }

    #[test]
    fn serving_unknown_and_malformed_requests() {
        let s = settings();
        let env = Env::new(&s, &s.domains[0].name.clone());
        let has = |r: &Element, cond: &str| {
            r.attr("type") == Some("error")
                && r.get_child("error", ns::CLIENT)
                    .is_some_and(|e| e.has_child(cond, ns::STANZAS))
        };
        let unknown =
            iq("<iq xmlns='jabber:client' type='get' id='q'><query xmlns='urn:unknown'/></iq>");
        let r = serve(&env, Entity::Server, Who::Anyone, &unknown).expect("reply");
        assert!(has(&r, "service-unavailable"), "{r:?}");
        let empty = iq("<iq xmlns='jabber:client' type='get' id='q'/>");
        let r = serve(&env, Entity::Server, Who::Anyone, &empty).expect("reply");
        assert!(has(&r, "bad-request"), "{r:?}");
        let result = iq("<iq xmlns='jabber:client' type='result' id='q'/>");
        assert!(serve(&env, Entity::Server, Who::Anyone, &result).is_none());
        // a handler that needs the account's state is not served in place
        let roster = iq(
            "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>",
        );
        assert!(answer(&env, Entity::Account, Who::Owner, &roster).is_none());
    }
}

//! The domain table: what each domain a signal can be addressed to is, looked up once
//! per signal by the registry.
//!
//! A domain is hosted here (its accounts and sessions are local), served by an actor
//! attached to the registry (a trusted component, a chat-room service: every signal for
//! the domain or any JID in it goes to that actor), or remote (federation: an outbound
//! queue per target and source domain). Domain names are compared in lower case
//! (RFC 7622 §3.2 nameprep leaves ASCII domains case-insensitive).

use crate::signals::Signal;
use crate::signals::to_registry::{Dismiss, Dismissal};
use actix::Recipient;
use std::collections::{HashMap, HashSet};

/// What kind of actor serves a domain that is not hosted as accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// A trusted component (XEP-0114), e.g. a gateway.
    Component,
    /// A chat-room service (XEP-0045).
    Rooms,
}

/// An actor that takes every signal for its domain.
#[derive(Clone)]
pub struct Service {
    pub kind: ServiceKind,
    pub signals: Recipient<Signal>,
    /// Told when the registry detaches it (another connection took the domain over, a
    /// reload removed it or changed its secret).
    pub dismiss: Option<Recipient<Dismiss>>,
}

/// The answer of a lookup.
pub enum Domain<'a> {
    /// Hosted here: accounts, sessions, the server itself.
    Local,
    /// Served by an attached actor.
    Service(&'a Service),
    /// Anywhere else: federation.
    Remote,
}

pub use crate::signals::to_registry::AttachError;

#[derive(Default)]
pub struct DomainTable {
    local: HashSet<String>,
    services: HashMap<String, Service>,
    /// The configured trusted components (lower-case domain → secret), connected or
    /// not: kept here so that a signal for one that is not connected is told apart from
    /// a remote domain without reading the settings.
    components: HashMap<String, String>,
}

impl DomainTable {
    pub fn new(local: impl IntoIterator<Item = String>) -> Self {
        DomainTable {
            local: local.into_iter().map(|d| d.to_ascii_lowercase()).collect(),
            services: HashMap::new(),
            components: HashMap::new(),
        }
    }

    /// What `domain` is. JIDs reach here with their domain already normalised, so the
    /// common case needs no allocation.
    pub fn lookup(&self, domain: &str) -> Domain<'_> {
        if self.local.contains(domain) {
            return Domain::Local;
        }
        if let Some(s) = self.services.get(domain) {
            return Domain::Service(s);
        }
        if domain.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.lookup(&domain.to_ascii_lowercase());
        }
        Domain::Remote
    }

    /// The hosted domains changed (configuration reload); attached services stay, except
    /// on a domain that is now hosted: those are removed and returned, to be told.
    pub fn set_local(&mut self, local: impl IntoIterator<Item = String>) -> Vec<(String, Service)> {
        self.local = local.into_iter().map(|d| d.to_ascii_lowercase()).collect();
        let gone: Vec<String> = self
            .services
            .keys()
            .filter(|d| self.local.contains(*d))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|d| self.services.remove(&d).map(|s| (d, s)))
            .collect()
    }

    /// The configured trusted components (domain, secret) changed (configuration
    /// reload). Attached components whose entry is gone or whose secret changed are
    /// removed and returned with the reason, to be told.
    pub fn set_components(
        &mut self,
        components: impl IntoIterator<Item = (String, String)>,
    ) -> Vec<(String, Service, Dismissal)> {
        let new: HashMap<String, String> = components
            .into_iter()
            .map(|(d, s)| (d.to_ascii_lowercase(), s))
            .collect();
        let mut dismissed = Vec::new();
        let attached: Vec<String> = self
            .services
            .iter()
            .filter(|(_, s)| s.kind == ServiceKind::Component)
            .map(|(d, _)| d.clone())
            .collect();
        for d in attached {
            let why = match (self.components.get(&d), new.get(&d)) {
                (_, None) => Dismissal::HostGone,
                (Some(old), Some(now)) if old != now => Dismissal::SecretChanged,
                _ => continue,
            };
            if let Some(s) = self.services.remove(&d) {
                dismissed.push((d, s, why));
            }
        }
        self.components = new;
        dismissed
    }

    /// Whether `domain` (lower case) is a configured trusted component.
    pub fn is_component(&self, domain: &str) -> bool {
        self.components.contains_key(domain)
            || (domain.bytes().any(|b| b.is_ascii_uppercase())
                && self.components.contains_key(&domain.to_ascii_lowercase()))
    }

    /// The configured secret of the component of `domain`.
    pub fn component_secret(&self, domain: &str) -> Option<&str> {
        self.components
            .get(&domain.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Attach an actor that serves `domain`. A second one for the same domain is refused
    /// (the caller decides whether to detach the first and try again).
    pub fn attach(&mut self, domain: &str, service: Service) -> Result<(), AttachError> {
        let d = domain.to_ascii_lowercase();
        if self.local.contains(&d) {
            return Err(AttachError::Hosted);
        }
        if self.services.get(&d).is_some_and(|s| s.signals.connected()) {
            return Err(AttachError::Taken);
        }
        self.services.insert(d, service);
        Ok(())
    }

    /// Attach `service` to `domain` in place of the one attached there, if any, which is
    /// returned (to be told it was replaced).
    pub fn replace(
        &mut self,
        domain: &str,
        service: Service,
    ) -> Result<Option<Service>, AttachError> {
        let d = domain.to_ascii_lowercase();
        if self.local.contains(&d) {
            return Err(AttachError::Hosted);
        }
        Ok(self
            .services
            .insert(d, service)
            .filter(|old| old.signals.connected()))
    }

    /// Detach the service of `domain`, if it is the one given (a replaced service that
    /// ends late must not detach its successor).
    pub fn detach(&mut self, domain: &str, signals: &Recipient<Signal>) -> bool {
        let d = domain.to_ascii_lowercase();
        if self.services.get(&d).is_some_and(|s| &s.signals == signals) {
            self.services.remove(&d);
            return true;
        }
        false
    }

    /// The attached services, by domain.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Service)> {
        self.services.iter().map(|(d, s)| (d.as_str(), s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::prelude::*;

    struct Sink;
    impl Actor for Sink {
        type Context = Context<Self>;
    }
    impl Handler<Signal> for Sink {
        type Result = ();
        fn handle(&mut self, _: Signal, _: &mut Context<Self>) {}
    }

    fn service(kind: ServiceKind) -> Service {
        Service {
            kind,
            signals: Sink.start().recipient(),
            dismiss: None,
        }
    }

    #[actix_rt::test]
    async fn lookup_local_service_remote() {
        let mut t = DomainTable::new(["example.org".to_string(), "Other.ORG".to_string()]);
        assert!(matches!(t.lookup("example.org"), Domain::Local));
        assert!(matches!(t.lookup("EXAMPLE.org"), Domain::Local));
        assert!(matches!(t.lookup("other.org"), Domain::Local));
        // a subdomain of a hosted domain is not hosted
        assert!(matches!(t.lookup("conference.example.org"), Domain::Remote));
        assert!(matches!(t.lookup("example.net"), Domain::Remote));
        t.attach("Conference.example.org", service(ServiceKind::Rooms))
            .expect("attach");
        match t.lookup("conference.example.org") {
            Domain::Service(s) => assert_eq!(s.kind, ServiceKind::Rooms),
            _ => panic!("the room service is not found"),
        }
        assert_eq!(t.services().count(), 1);
    }

    #[actix_rt::test]
    async fn attach_refuses_hosted_and_taken_domains() {
        let mut t = DomainTable::new(["example.org".to_string()]);
        assert_eq!(
            t.attach("example.org", service(ServiceKind::Component)),
            Err(AttachError::Hosted)
        );
        let first = service(ServiceKind::Component);
        let first_signals = first.signals.clone();
        t.attach("irc.example.org", first).expect("attach");
        assert_eq!(
            t.attach("irc.example.org", service(ServiceKind::Component)),
            Err(AttachError::Taken)
        );
        // only the attached service itself can detach it
        let other = service(ServiceKind::Component).signals;
        assert!(!t.detach("irc.example.org", &other));
        assert!(t.detach("irc.example.org", &first_signals));
        assert!(matches!(t.lookup("irc.example.org"), Domain::Remote));
        // replacing hands the old one back
        let first = service(ServiceKind::Component);
        let first_signals = first.signals.clone();
        t.attach("irc.example.org", first).expect("attach");
        let second = service(ServiceKind::Component);
        let second_signals = second.signals.clone();
        let old = t.replace("irc.example.org", second).expect("replace");
        assert!(old.is_some_and(|o| o.signals == first_signals));
        // the replaced one ending late does not detach its successor
        assert!(!t.detach("irc.example.org", &first_signals));
        assert!(
            matches!(t.lookup("irc.example.org"), Domain::Service(s) if s.signals == second_signals)
        );
        assert_eq!(
            t.replace("example.org", service(ServiceKind::Component))
                .err(),
            Some(AttachError::Hosted)
        );
    }

    #[actix_rt::test]
    async fn a_domain_that_becomes_hosted_loses_its_service() {
        let mut t = DomainTable::new(["example.org".to_string()]);
        t.attach("gw.example.org", service(ServiceKind::Component))
            .expect("attach");
        t.attach("irc.example.org", service(ServiceKind::Component))
            .expect("attach");
        let gone = t.set_local(["example.org".to_string(), "GW.example.org".to_string()]);
        // returned, so that it is told (and stops posing as the now hosted domain)
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, "gw.example.org");
        assert!(matches!(t.lookup("gw.example.org"), Domain::Local));
        assert_eq!(t.services().count(), 1);
    }

    #[actix_rt::test]
    async fn removed_components_and_changed_secrets_are_dismissed() {
        let mut t = DomainTable::new(["example.org".to_string()]);
        let conf = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(d, s)| (d.to_string(), s.to_string()))
                .collect()
        };
        assert!(
            t.set_components(conf(&[
                ("IRC.example.org", "a"),
                ("gw.example.org", "b"),
                ("x.example.org", "c")
            ]))
            .is_empty()
        );
        assert!(t.is_component("irc.example.org") && t.is_component("IRC.EXAMPLE.org"));
        assert!(!t.is_component("example.net"));
        assert_eq!(t.component_secret("Irc.example.org"), Some("a"));
        for d in ["irc.example.org", "gw.example.org", "x.example.org"] {
            t.attach(d, service(ServiceKind::Component))
                .expect("attach");
        }
        t.attach("rooms.example.org", service(ServiceKind::Rooms))
            .expect("attach");
        // irc removed, gw's secret changed, x unchanged; the room service is no component
        let mut out = t.set_components(conf(&[("gw.example.org", "B"), ("x.example.org", "c")]));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let got: Vec<(&str, Dismissal)> = out.iter().map(|(d, _, w)| (d.as_str(), *w)).collect();
        assert_eq!(
            got,
            [
                ("gw.example.org", Dismissal::SecretChanged),
                ("irc.example.org", Dismissal::HostGone)
            ]
        );
        assert!(matches!(t.lookup("gw.example.org"), Domain::Remote));
        assert!(matches!(t.lookup("irc.example.org"), Domain::Remote));
        assert!(matches!(t.lookup("x.example.org"), Domain::Service(_)));
        assert!(matches!(t.lookup("rooms.example.org"), Domain::Service(_)));
        assert!(!t.is_component("irc.example.org") && t.is_component("gw.example.org"));
    }
}

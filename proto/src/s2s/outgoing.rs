//! What an outgoing server stream does next: the decision on each `<stream:features/>`.

use crate::ns;
use minidom::Element;

/// What the peer's features let us do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send `<starttls/>`.
    StartTls,
    /// Authenticate with SASL EXTERNAL (our certificate).
    External,
    /// Authenticate with dialback.
    Dialback,
    /// Nothing we may do: the link fails for this reason.
    Fail(Failure),
}

/// Why an outgoing stream cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The domain must be reached securely and the peer does not offer STARTTLS.
    NoStartTls,
    /// The peer requires TLS, which we cannot do with it.
    TlsRequired,
    /// No authentication method we share.
    NoAuthMethod,
    /// The peer's certificate does not validate against the trusted certificates.
    UntrustedCertificate,
    /// The certificate is valid but names neither the domain nor its relay host.
    WrongName,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NoStartTls => "the peer does not offer STARTTLS",
            Failure::TlsRequired => "the peer requires TLS",
            Failure::NoAuthMethod => "no authentication method in common",
            Failure::UntrustedCertificate => "the peer's certificate is not trusted",
            Failure::WrongName => "the peer's certificate names another domain",
        }
    }
}

/// The state of the outgoing link that the decision depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkState {
    /// TLS is up on this connection.
    pub tls: bool,
    /// The domain is a secure one: TLS and a valid certificate are required.
    pub secure: bool,
    /// The peer's certificate validated (chain and name); meaningful once TLS is up.
    pub cert_valid: bool,
    /// We have a certificate the peer may accept for SASL EXTERNAL.
    pub can_external: bool,
}

/// The next step, given the peer's `<stream:features/>`.
pub fn next(features: &Element, s: LinkState) -> Step {
    let starttls = features.get_child("starttls", ns::TLS);
    if !s.tls {
        if starttls.is_some() {
            return Step::StartTls;
        }
        if s.secure {
            return Step::Fail(Failure::NoStartTls);
        }
    }
    let external = features
        .get_child("mechanisms", ns::SASL)
        .is_some_and(|m| m.children().any(|c| c.text().trim() == "EXTERNAL"));
    if s.tls && external && s.can_external {
        return Step::External;
    }
    let dialback = features.has_child("dialback", ns::DIALBACK_FEATURE);
    if dialback {
        return Step::Dialback;
    }
    if features.has_child("mechanisms", ns::SASL) && !external && !s.tls {
        // a pre-TLS SASL offer without dialback: nothing to do without TLS
        return Step::Fail(Failure::TlsRequired);
    }
    // a server that announces nothing may still speak dialback (pre-XEP-0220 peers)
    if !features.has_child("mechanisms", ns::SASL) {
        return Step::Dialback;
    }
    Step::Fail(Failure::NoAuthMethod)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(inner: &str) -> Element {
        format!("<features xmlns='http://etherx.jabber.org/streams'>{inner}</features>")
            .parse()
            .expect("xml")
    }

    const TLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
    const DB: &str = "<dialback xmlns='urn:xmpp:features:dialback'><errors/></dialback>";
    const EXT: &str = "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>EXTERNAL</mechanism></mechanisms>";

    #[test]
    fn tls_first_when_offered() {
        let f = features(&format!("{TLS}{DB}"));
        assert_eq!(next(&f, LinkState::default()), Step::StartTls);
        let up = LinkState {
            tls: true,
            ..Default::default()
        };
        assert_eq!(next(&f, up), Step::Dialback);
    }

    #[test]
    fn secure_domains_need_starttls() {
        let f = features(DB);
        let secure = LinkState {
            secure: true,
            ..Default::default()
        };
        assert_eq!(next(&f, secure), Step::Fail(Failure::NoStartTls));
        assert_eq!(next(&f, LinkState::default()), Step::Dialback);
    }

    #[test]
    fn external_when_offered_and_possible_else_dialback() {
        let f = features(&format!("{EXT}{DB}"));
        let mut s = LinkState {
            tls: true,
            ..Default::default()
        };
        assert_eq!(next(&f, s), Step::Dialback);
        s.can_external = true;
        assert_eq!(next(&f, s), Step::External);
        let only_ext = features(EXT);
        s.can_external = false;
        assert_eq!(next(&only_ext, s), Step::Fail(Failure::NoAuthMethod));
    }

    #[test]
    fn empty_features_mean_old_style_dialback() {
        assert_eq!(next(&features(""), LinkState::default()), Step::Dialback);
    }
}

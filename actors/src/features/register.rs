//! In-band registration (XEP-0077), in two parts:
//!
//! - [`SIGNUP`]: before authentication, on a domain whose "Auto Signup" is on: the
//!   `<register/>` stream feature (only where a password may travel, as for PLAIN),
//!   the form and the account creation, run by the client stream
//!   (`stream::c2s_register`), rate-limited per address;
//! - [`FEATURE`]: for the domain's users (no `to`, their own bare JID, or the domain):
//!   what is on file, password change ("Allow to Modify Password") and account removal,
//!   run by the account actor (`account/register.rs`). The server's disco#info lists
//!   `jabber:iq:register` because these work for every user.
//!
//! Registration requests addressed to another domain (a component, a gateway) are not
//! taken here: they are routed to it like any other iq.

use super::{Entity, Feature, IqHandler, IqRoute, StreamFeature, Types, Who, always};
use xmppd_proto::ns;
use xmppd_proto::xep::register;

pub const SIGNUP: Feature = Feature {
    name: "register-signup",
    enabled: |env| env.domain.is_some_and(|d| d.auto_signup),
    disco: &[],
    iq: &[IqRoute {
        to: Entity::Stream,
        ns: ns::IQ_REGISTER,
        element: "query",
        types: Types::GetSet,
        from: Who::Owner,
        handler: IqHandler::Stream(crate::stream::c2s::register_iq),
    }],
    stream: Some(StreamFeature {
        after_auth: false,
        xml: |env| {
            if register::offer_feature(env.domain, env.tls.unwrap_or(false)) {
                "<register xmlns='http://jabber.org/features/iq-register'/>"
            } else {
                ""
            }
        },
    }),
    taps: &[],
};

const fn own(to: Entity) -> IqRoute {
    IqRoute {
        to,
        ns: ns::IQ_REGISTER,
        element: "query",
        types: Types::GetSet,
        from: Who::Owner,
        handler: IqHandler::Account(crate::account::iq::register),
    }
}

pub const FEATURE: Feature = Feature {
    name: "register",
    enabled: always,
    disco: &[(Entity::Server, ns::IQ_REGISTER)],
    iq: &[own(Entity::Account), own(Entity::Server)],
    stream: None,
    taps: &[],
};

//! SASL (RFC 6120 §6) on top of rsasl: which mechanisms a stream offers, the claimed
//! identity to look up before the exchange, and the exchange itself.
//!
//! Credentials are fetched from storage asynchronously *before* rsasl runs, so its
//! synchronous callbacks only read what is already in memory.

use crate::auth::scram::{Credentials, Hash};
use crate::net::tls::ChannelBinding;
use hmac::{Hmac, Mac};
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::mechanisms::scram::properties::ScramStoredPassword;
use rsasl::prelude::*;
use rsasl::property::{AuthId, AuthzId, Password};
use rsasl::validate::{Validate, ValidationError};
use sha2::Sha256;
use std::io::Cursor;

/// Mechanisms xmppd can offer, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
    Anonymous,
}

impl Mech {
    pub const ALL: [Mech; 6] = [
        Mech::ScramSha256Plus,
        Mech::ScramSha1Plus,
        Mech::ScramSha256,
        Mech::ScramSha1,
        Mech::Plain,
        Mech::Anonymous,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Mech::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mech::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mech::ScramSha256 => "SCRAM-SHA-256",
            Mech::ScramSha1 => "SCRAM-SHA-1",
            Mech::Plain => "PLAIN",
            Mech::Anonymous => "ANONYMOUS",
        }
    }

    pub fn parse(name: &str) -> Option<Mech> {
        Mech::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn is_plus(self) -> bool {
        matches!(self, Mech::ScramSha256Plus | Mech::ScramSha1Plus)
    }

    fn hash(self) -> Option<Hash> {
        match self {
            Mech::ScramSha256Plus | Mech::ScramSha256 => Some(Hash::Sha256),
            Mech::ScramSha1Plus | Mech::ScramSha1 => Some(Hash::Sha1),
            _ => None,
        }
    }
}

/// What decides the mechanism list of a stream.
#[derive(Debug, Clone, Copy)]
pub struct OfferContext {
    pub tls: bool,
    pub channel_binding: bool,
    pub plain_without_tls: bool,
    pub anonymous: bool,
}

/// The mechanisms to advertise on a stream.
pub fn offered(c: OfferContext) -> Vec<Mech> {
    Mech::ALL
        .into_iter()
        .filter(|m| match m {
            Mech::ScramSha256Plus | Mech::ScramSha1Plus => c.tls && c.channel_binding,
            Mech::ScramSha256 | Mech::ScramSha1 => true,
            Mech::Plain => c.tls || c.plain_without_tls,
            Mech::Anonymous => c.anonymous,
        })
        .collect()
}

/// SASL `<failure/>` conditions (RFC 6120 §6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Aborted,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Aborted => "aborted",
            Failure::EncryptionRequired => "encryption-required",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::MalformedRequest => "malformed-request",
            Failure::MechanismTooWeak => "mechanism-too-weak",
            Failure::NotAuthorized => "not-authorized",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// The identity an initial response claims, looked up before the exchange runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// An account's local part (SCRAM `n=`, PLAIN authcid).
    User(String),
    /// ANONYMOUS: no account.
    Anonymous,
}

/// Extract the claimed username from a decoded initial response.
pub fn claim(mech: Mech, initial: &[u8]) -> Result<Claim, Failure> {
    match mech {
        Mech::Anonymous => Ok(Claim::Anonymous),
        Mech::Plain => {
            let mut parts = initial.split(|b| *b == 0);
            let (_authzid, authcid, _pw) = (parts.next(), parts.next(), parts.next());
            if parts.next().is_some() {
                return Err(Failure::MalformedRequest);
            }
            let authcid = authcid.ok_or(Failure::MalformedRequest)?;
            let s = std::str::from_utf8(authcid).map_err(|_| Failure::MalformedRequest)?;
            Ok(Claim::User(s.to_string()))
        }
        _ => {
            // gs2-header "," "n=" saslname "," "r=" ...  (RFC 5802 §7)
            let s = std::str::from_utf8(initial).map_err(|_| Failure::MalformedRequest)?;
            let mut fields = s.splitn(4, ',');
            let (_cb, _authz, user) = (fields.next(), fields.next(), fields.next());
            let user = user
                .and_then(|u| u.strip_prefix("n="))
                .ok_or(Failure::MalformedRequest)?;
            Ok(Claim::User(
                decode_saslname(user).ok_or(Failure::MalformedRequest)?,
            ))
        }
    }
}

/// RFC 5802 saslname: `=2C` is `,` and `=3D` is `=`; any other `=` is an error.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The outcome of a successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The local part of the account (a random one for ANONYMOUS).
    pub username: String,
    pub anonymous: bool,
}

struct AuthedUser;
impl Validation for AuthedUser {
    type Value = Authenticated;
}

/// Per-attempt rsasl callback: credentials were fetched before the exchange started.
struct AttemptCallback {
    claimed: Option<String>,
    domain: String,
    creds: Option<Credentials>,
    /// Stands in for an unknown account so that its SCRAM exchange looks like any other.
    decoy: Credentials,
}

impl AttemptCallback {
    fn effective(&self) -> &Credentials {
        self.creds.as_ref().unwrap_or(&self.decoy)
    }
}

impl SessionCallback for AttemptCallback {
    fn callback(
        &self,
        sd: &SessionData,
        ctx: &Context,
        req: &mut Request,
    ) -> Result<(), SessionError> {
        let Some(hash) = Mech::parse(sd.mechanism().mechanism.as_str()).and_then(Mech::hash) else {
            return Ok(());
        };
        // The exchange must be about the identity whose credentials were loaded.
        if ctx.get_ref::<AuthId>() != self.claimed.as_deref() {
            return Ok(());
        }
        if req.is::<ScramStoredPassword>() {
            let c = self.effective();
            let k = c.keys(hash);
            req.satisfy::<ScramStoredPassword>(&ScramStoredPassword::new(
                c.iterations,
                &c.salt,
                &k.stored_key,
                &k.server_key,
            ))?;
        }
        Ok(())
    }

    fn validate(
        &self,
        sd: &SessionData,
        ctx: &Context,
        v: &mut Validate<'_>,
    ) -> Result<(), ValidationError> {
        let mech = Mech::parse(sd.mechanism().mechanism.as_str());
        if mech == Some(Mech::Anonymous) {
            let name = format!("anon-{:016x}", rand::random::<u64>());
            v.with::<AuthedUser, _>(|| {
                Ok(Authenticated {
                    username: name,
                    anonymous: true,
                })
            })?;
            return Ok(());
        }
        let authid = ctx.get_ref::<AuthId>().unwrap_or_default();
        // PLAIN: the password is checked (one key derivation, against the decoy for an
        // unknown account) before anything else is decided, so that every failure costs
        // what a success costs
        let password_ok = mech == Some(Mech::Plain)
            && std::str::from_utf8(ctx.get_ref::<Password>().unwrap_or_default())
                .map(|p| self.effective().verify_password(p))
                .unwrap_or(false);
        if Some(authid) != self.claimed.as_deref() || self.creds.is_none() {
            return Ok(());
        }
        // An authorization identity other than the account's own bare JID is refused.
        if let Some(z) = ctx.get_ref::<AuthzId>().filter(|z| !z.is_empty())
            && z != format!("{authid}@{}", self.domain)
            && z != authid
        {
            return Ok(());
        }
        let ok = match mech {
            Some(m) if m.hash().is_some() => true, // rsasl calls validate only after the proof checked out
            Some(Mech::Plain) => password_ok,
            _ => false,
        };
        if ok {
            v.with::<AuthedUser, _>(|| {
                Ok(Authenticated {
                    username: authid.to_string(),
                    anonymous: false,
                })
            })?;
        }
        Ok(())
    }
}

impl ChannelBindingCallback for CbData {
    fn get_cb_data(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name)
    }
}

struct CbData(ChannelBinding);

/// What one step of an exchange produced.
#[derive(Debug)]
pub enum Step {
    /// Send `<challenge/>` with this data.
    Challenge(Vec<u8>),
    /// Send `<success/>` (with additional data when present).
    Success(Authenticated, Option<Vec<u8>>),
    Failure(Failure),
}

/// One SASL exchange on one stream.
pub struct Exchange {
    session: rsasl::prelude::Session<AuthedUser, CbData>,
}

/// A key for decoy salts, so that the salt of an unknown user is the same every time.
pub struct DecoyKey(pub [u8; 32]);

impl DecoyKey {
    pub fn random() -> Self {
        DecoyKey(rand::random())
    }

    /// Credentials that stand in for an unknown account `user`: a salt that is the same
    /// every time, keys nobody knows the password for.
    pub fn decoy(&self, user: &str, iterations: u32) -> Credentials {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        m.update(user.as_bytes());
        let salt = m.finalize().into_bytes();
        let random = |n: usize| (0..n).map(|_| rand::random::<u8>()).collect::<Vec<_>>();
        Credentials {
            salt: salt[..16].to_vec(),
            iterations,
            sha1: crate::auth::scram::ScramKeys {
                stored_key: random(20),
                server_key: random(20),
            },
            sha256: crate::auth::scram::ScramKeys {
                stored_key: random(32),
                server_key: random(32),
            },
            plain: None,
        }
    }
}

impl Exchange {
    /// Start an exchange for `mech` whose claimed identity resolved to `creds`.
    pub fn start(
        mech: Mech,
        claim: &Claim,
        domain: &str,
        creds: Option<Credentials>,
        cb: ChannelBinding,
        decoy_key: &DecoyKey,
        iterations: u32,
    ) -> Result<Exchange, Failure> {
        use rsasl::mechanisms::{anonymous::ANONYMOUS, plain::PLAIN, scram::*};
        static WITH_PLUS: &[Mechanism] = &[
            SCRAM_SHA256_PLUS,
            SCRAM_SHA1_PLUS,
            SCRAM_SHA256,
            SCRAM_SHA1,
            PLAIN,
            ANONYMOUS,
        ];
        static WITHOUT_PLUS: &[Mechanism] = &[SCRAM_SHA256, SCRAM_SHA1, PLAIN, ANONYMOUS];
        let claimed = match claim {
            Claim::User(u) => Some(u.clone()),
            Claim::Anonymous => None,
        };
        let decoy = decoy_key.decoy(claimed.as_deref().unwrap_or(""), iterations);
        let plus = !cb.types().is_empty();
        let cbcb = AttemptCallback {
            claimed,
            domain: domain.to_string(),
            creds,
            decoy,
        };
        let config = SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(if plus {
                WITH_PLUS
            } else {
                WITHOUT_PLUS
            }))
            .with_callback(cbcb)
            .map_err(|_| Failure::TemporaryAuthFailure)?;
        let server = SASLServer::<AuthedUser, CbData>::with_cb(config, CbData(cb));
        let name =
            Mechname::parse(mech.name().as_bytes()).map_err(|_| Failure::InvalidMechanism)?;
        let session = server
            .start_suggested(name)
            .map_err(|_| Failure::InvalidMechanism)?;
        Ok(Exchange { session })
    }

    /// Feed the client's (decoded) data.
    pub fn step(&mut self, input: &[u8]) -> Step {
        let mut out = Cursor::new(Vec::new());
        match self.session.step(Some(input), &mut out) {
            Ok(State::Running) => Step::Challenge(out.into_inner()),
            Ok(State::Finished(sent)) => match self.session.validation() {
                Some(who) => {
                    let data = out.into_inner();
                    let extra = (sent == MessageSent::Yes || !data.is_empty()).then_some(data);
                    Step::Success(who, extra)
                }
                None => Step::Failure(Failure::NotAuthorized),
            },
            Err(e) if e.is_mechanism_error() => Step::Failure(Failure::NotAuthorized),
            Err(_) => Step::Failure(Failure::NotAuthorized),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_depends_on_tls() {
        let c = OfferContext {
            tls: false,
            channel_binding: false,
            plain_without_tls: false,
            anonymous: false,
        };
        assert_eq!(offered(c), vec![Mech::ScramSha256, Mech::ScramSha1]);
        let c = OfferContext {
            tls: true,
            channel_binding: true,
            plain_without_tls: false,
            anonymous: true,
        };
        assert_eq!(offered(c), Mech::ALL.to_vec());
    }

    #[test]
    fn claims() {
        assert_eq!(
            claim(Mech::Plain, b"\0alice\0pw"),
            Ok(Claim::User("alice".into()))
        );
        assert_eq!(
            claim(Mech::Plain, b"garbage"),
            Err(Failure::MalformedRequest)
        );
        assert_eq!(
            claim(Mech::ScramSha256, b"n,,n=al=2Cice,r=abc"),
            Ok(Claim::User("al,ice".into()))
        );
        assert_eq!(
            claim(Mech::ScramSha256, b"n,,n=bad=XX,r=abc"),
            Err(Failure::MalformedRequest)
        );
        assert_eq!(
            claim(Mech::ScramSha256, b"n,,r=abc"),
            Err(Failure::MalformedRequest)
        );
    }

    fn run_client(
        mech: Mech,
        user: &str,
        password: &str,
        creds: Option<Credentials>,
        cb: ChannelBinding,
        client_cb: Vec<u8>,
    ) -> Step {
        struct C {
            user: String,
            pw: String,
        }
        impl SessionCallback for C {
            fn enable_channel_binding(&self) -> bool {
                true
            }
            fn callback(
                &self,
                _: &SessionData,
                _: &Context,
                req: &mut Request,
            ) -> Result<(), SessionError> {
                req.satisfy::<AuthId>(&self.user)?;
                req.satisfy::<Password>(self.pw.as_bytes())?;
                Ok(())
            }
        }
        struct ClientCb(Vec<u8>);
        impl ChannelBindingCallback for ClientCb {
            fn get_cb_data(&self, name: &str) -> Option<&[u8]> {
                (name == "tls-exporter").then_some(&self.0[..])
            }
        }
        use rsasl::mechanisms::scram::*;
        static M: &[Mechanism] = &[SCRAM_SHA256_PLUS, SCRAM_SHA256, SCRAM_SHA1];
        let cfg = SASLConfig::builder()
            .with_registry(Registry::with_mechanisms(M))
            .with_callback(C {
                user: user.into(),
                pw: password.into(),
            })
            .expect("client config");
        let name = Mechname::parse(mech.name().as_bytes()).expect("name");
        let mut client = SASLClient::with_cb(cfg, ClientCb(client_cb))
            .start_suggested(&[name])
            .expect("client");
        let mut first = Cursor::new(Vec::new());
        client.step(None, &mut first).expect("client first");
        let first = first.into_inner();
        let claim = claim(mech, &first).expect("claim");
        let mut ex = Exchange::start(mech, &claim, "a.test", creds, cb, &DecoyKey([7; 32]), 4096)
            .expect("start");
        let mut input = first;
        loop {
            match ex.step(&input) {
                Step::Challenge(c) => {
                    let mut resp = Cursor::new(Vec::new());
                    if client.step(Some(&c), &mut resp).is_err() {
                        return Step::Failure(Failure::NotAuthorized);
                    }
                    input = resp.into_inner();
                }
                other => return other,
            }
        }
    }

    #[test]
    fn scram_sha256_good_and_bad_password() {
        let creds = Credentials::derive("pencil", 4096, false);
        let no_cb = ChannelBinding::default();
        match run_client(
            Mech::ScramSha256,
            "user",
            "pencil",
            Some(creds.clone()),
            no_cb.clone(),
            vec![],
        ) {
            Step::Success(a, Some(_)) => assert_eq!(a.username, "user"),
            other => panic!("expected success, got {other:?}"),
        }
        assert!(matches!(
            run_client(
                Mech::ScramSha256,
                "user",
                "wrong",
                Some(creds),
                no_cb.clone(),
                vec![]
            ),
            Step::Failure(_)
        ));
        assert!(matches!(
            run_client(Mech::ScramSha1, "nobody", "x", None, no_cb, vec![]),
            Step::Failure(_)
        ));
    }

    #[test]
    fn scram_plus_checks_channel_binding() {
        let creds = Credentials::derive("pencil", 4096, false);
        let cb = ChannelBinding {
            exporter: Some(vec![1; 32]),
            endpoint: None,
            ..ChannelBinding::default()
        };
        assert!(matches!(
            run_client(
                Mech::ScramSha256Plus,
                "user",
                "pencil",
                Some(creds.clone()),
                cb.clone(),
                vec![1; 32]
            ),
            Step::Success(..)
        ));
        // a man in the middle sees different TLS keying material
        assert!(matches!(
            run_client(
                Mech::ScramSha256Plus,
                "user",
                "pencil",
                Some(creds),
                cb,
                vec![2; 32]
            ),
            Step::Failure(_)
        ));
    }

    #[test]
    fn unknown_user_gets_a_stable_salt() {
        let key = DecoyKey([9; 32]);
        assert_eq!(key.decoy("ghost", 4096).salt, key.decoy("ghost", 4096).salt);
        assert_ne!(key.decoy("ghost", 4096).salt, key.decoy("other", 4096).salt);
    }

    #[test]
    fn plain() {
        let creds = Credentials::derive("pw", 64, false);
        let claim = Claim::User("alice".into());
        let mut ex = Exchange::start(
            Mech::Plain,
            &claim,
            "a.test",
            Some(creds.clone()),
            ChannelBinding::default(),
            &DecoyKey([0; 32]),
            64,
        )
        .expect("start");
        assert!(matches!(ex.step(b"\0alice\0pw"), Step::Success(..)));
        let mut ex = Exchange::start(
            Mech::Plain,
            &claim,
            "a.test",
            Some(creds.clone()),
            ChannelBinding::default(),
            &DecoyKey([0; 32]),
            64,
        )
        .expect("start");
        assert!(matches!(
            ex.step(b"\0alice\0nope"),
            Step::Failure(Failure::NotAuthorized)
        ));
        let mut ex = Exchange::start(
            Mech::Plain,
            &claim,
            "a.test",
            Some(creds.clone()),
            ChannelBinding::default(),
            &DecoyKey([0; 32]),
            64,
        )
        .expect("start");
        assert!(
            matches!(ex.step(b"mallory@a.test\0alice\0pw"), Step::Failure(_)),
            "foreign authzid"
        );
        let mut ex = Exchange::start(
            Mech::Plain,
            &claim,
            "a.test",
            Some(creds),
            ChannelBinding::default(),
            &DecoyKey([0; 32]),
            64,
        )
        .expect("start");
        assert!(
            matches!(ex.step(b"alice@a.test\0alice\0pw"), Step::Success(..)),
            "own JID as authzid"
        );
    }
}

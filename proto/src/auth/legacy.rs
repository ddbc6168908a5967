//! XEP-0078 non-SASL authentication (`jabber:iq:auth`) for old clients.

use crate::auth::scram::{Credentials, constant_time_eq};
use crate::ns;
use crate::stanza::ErrorCondition;
use minidom::Element;
use sha1::{Digest, Sha1};

/// A parsed `jabber:iq:auth` set.
#[derive(Debug, Clone)]
pub struct Request {
    pub username: String,
    pub resource: String,
    pub password: Option<String>,
    pub digest: Option<String>,
}

/// The fields answer to an auth `get`: digest only where the stored form allows it.
pub fn fields(query: &Element, plain_stored: bool) -> Element {
    let mut q = Element::bare("query", ns::IQ_AUTH);
    let mut user = Element::bare("username", ns::IQ_AUTH);
    if let Some(u) = query.get_child("username", ns::IQ_AUTH) {
        user.append_text(u.text());
    }
    q.append_child(user);
    q.append_child(Element::bare("password", ns::IQ_AUTH));
    if plain_stored {
        q.append_child(Element::bare("digest", ns::IQ_AUTH));
    }
    q.append_child(Element::bare("resource", ns::IQ_AUTH));
    q
}

pub fn parse(iq: &Element) -> Result<Request, ErrorCondition> {
    let q = iq
        .get_child("query", ns::IQ_AUTH)
        .ok_or(ErrorCondition::BadRequest)?;
    let text = |n: &str| q.get_child(n, ns::IQ_AUTH).map(|e| e.text());
    let username = text("username")
        .filter(|u| !u.is_empty())
        .ok_or(ErrorCondition::NotAcceptable)?;
    // XEP-0078 §3: a missing resource is "not acceptable"
    let resource = text("resource")
        .filter(|r| !r.trim().is_empty())
        .ok_or(ErrorCondition::NotAcceptable)?;
    let password = text("password");
    let digest = text("digest");
    if password.is_none() && digest.is_none() {
        return Err(ErrorCondition::NotAcceptable);
    }
    Ok(Request {
        username,
        resource,
        password,
        digest,
    })
}

/// Check the password, or the digest SHA1(stream id + password) when the cleartext is kept.
pub fn verify(req: &Request, creds: &Credentials, stream_id: &str) -> bool {
    if let Some(pw) = &req.password {
        return creds.verify_password(pw);
    }
    match (&req.digest, &creds.plain) {
        (Some(d), Some(plain)) => {
            let expect = Sha1::digest(format!("{stream_id}{plain}").as_bytes());
            let hex: String = expect.iter().map(|b| format!("{b:02x}")).collect();
            constant_time_eq(hex.as_bytes(), d.trim().to_ascii_lowercase().as_bytes())
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_per_xep_0078_example() {
        // XEP-0078 example 6: stream id 3EE948B0, password Calli0pe
        let creds = Credentials::derive_with_salt("Calli0pe", b"salt", 16, true);
        let req = Request {
            username: "bill".into(),
            resource: "globe".into(),
            password: None,
            digest: Some("48fc78be9ec8f86d8ce1c39c320c97c21d62334d".into()),
        };
        assert!(verify(&req, &creds, "3EE948B0"));
        assert!(!verify(&req, &creds, "other"));
        let scram_only = Credentials::derive_with_salt("Calli0pe", b"salt", 16, false);
        assert!(
            !verify(&req, &scram_only, "3EE948B0"),
            "digest needs the stored cleartext"
        );
    }

    #[test]
    fn parse_requires_resource() {
        let iq: Element = "<iq xmlns='jabber:client' type='set'><query xmlns='jabber:iq:auth'><username>a</username><password>p</password></query></iq>"
            .parse()
            .expect("xml");
        assert_eq!(parse(&iq).err(), Some(ErrorCondition::NotAcceptable));
    }
}

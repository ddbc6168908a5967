//! Dialback keys (XEP-0185) and the dialback elements (XEP-0220).

use crate::ns;
use crate::xml::escape::{escape_attr, escape_text};
use hmac::{Hmac, Mac};
use minidom::Element;
use sha2::{Digest, Sha256};

/// The dialback key for a stream (XEP-0185 §3):
/// `HEX(HMAC-SHA256(HEX(SHA256(secret)), receiving ' ' originating ' ' stream_id))`.
/// Only the server that made the key checks it, so the secret never leaves it.
pub fn key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed = hex(&Sha256::digest(secret));
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(hashed.as_bytes()).expect("HMAC takes any key");
    mac.update(receiving.to_ascii_lowercase().as_bytes());
    mac.update(b" ");
    mac.update(originating.to_ascii_lowercase().as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Compare a key received with the one expected, in constant time.
pub fn key_matches(secret: &[u8], receiving: &str, originating: &str, id: &str, got: &str) -> bool {
    let want = key(secret, receiving, originating, id);
    let (a, b) = (want.as_bytes(), got.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A dialback element, as parsed from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialback {
    /// `<db:result from to>key</db:result>`: a request to authorise `from` for `to`.
    ResultRequest {
        from: String,
        to: String,
        key: String,
    },
    /// `<db:result type/>`: the answer to our request.
    ResultAnswer {
        from: String,
        to: String,
        answer: Answer,
    },
    /// `<db:verify from to id>key</db:verify>`: are we the authority that made this key?
    VerifyRequest {
        from: String,
        to: String,
        id: String,
        key: String,
    },
    /// `<db:verify type id/>`: the authority's answer.
    VerifyAnswer {
        from: String,
        to: String,
        id: String,
        answer: Answer,
    },
}

/// The `type` of a dialback answer (XEP-0220 §2.1.3, §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `type='valid'`: the key was checked and is good.
    Valid,
    /// `type='invalid'` (or an unknown type): the key was checked and refused.
    Invalid,
    /// `type='error'`: the key could not be checked; the defined condition of its
    /// `<error/>` child (e.g. `remote-server-not-found`, `item-not-found`), or
    /// `undefined-condition` when it names none.
    Error(String),
}

impl Answer {
    fn of(el: &Element, ty: &str) -> Answer {
        match ty {
            "valid" => Answer::Valid,
            "error" => {
                let cond = el
                    .children()
                    .find(|c| c.name() == "error")
                    .and_then(|e| e.children().find(|c| c.has_ns(ns::STANZAS)))
                    .map(|c| c.name().to_string())
                    .unwrap_or_else(|| "undefined-condition".to_string());
                Answer::Error(cond)
            }
            _ => Answer::Invalid,
        }
    }
}

/// Why a dialback element was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialbackError {
    /// Not in the dialback namespace.
    NotDialback,
    /// A required attribute is missing or empty.
    Missing,
}

impl Dialback {
    /// Read a dialback element (case of the domains folded to lower case).
    pub fn parse(el: &Element) -> Result<Dialback, DialbackError> {
        if !el.has_ns(ns::DIALBACK) {
            return Err(DialbackError::NotDialback);
        }
        let attr = |n: &str| {
            el.attr(n)
                .filter(|v| !v.is_empty())
                .map(|v| v.to_ascii_lowercase())
                .ok_or(DialbackError::Missing)
        };
        let from = attr("from")?;
        let to = attr("to")?;
        let ty = el.attr("type");
        match (el.name(), ty) {
            ("result", None) => {
                let key = key_of(el)?;
                Ok(Dialback::ResultRequest { from, to, key })
            }
            ("result", Some(t)) => Ok(Dialback::ResultAnswer {
                from,
                to,
                answer: Answer::of(el, t),
            }),
            ("verify", ty) => {
                let id = el
                    .attr("id")
                    .filter(|v| !v.is_empty())
                    .ok_or(DialbackError::Missing)?
                    .to_string();
                match ty {
                    None => {
                        let key = key_of(el)?;
                        Ok(Dialback::VerifyRequest { from, to, id, key })
                    }
                    Some(t) => Ok(Dialback::VerifyAnswer {
                        from,
                        to,
                        id,
                        answer: Answer::of(el, t),
                    }),
                }
            }
            _ => Err(DialbackError::NotDialback),
        }
    }
}

/// `<db:result>` carrying our key (the originating side asks to be authorised).
pub fn result_request(from: &str, to: &str, key: &str) -> String {
    format!(
        "<db:result xmlns:db='{}' from='{}' to='{}'>{}</db:result>",
        ns::DIALBACK,
        escape_attr(from),
        escape_attr(to),
        escape_text(key)
    )
}

/// `<db:result type='valid|invalid'/>`: the receiving side's answer.
pub fn result_answer(from: &str, to: &str, valid: bool) -> String {
    format!(
        "<db:result xmlns:db='{}' from='{}' to='{}' type='{}'/>",
        ns::DIALBACK,
        escape_attr(from),
        escape_attr(to),
        if valid { "valid" } else { "invalid" }
    )
}

/// A dialback key as a peer sent it: 1 to 128 ASCII letters and digits (ours are hex;
/// XEP-0185 keys are hex digests). Anything else is refused, never copied into the
/// `<db:verify/>` we send to the authoritative server (a key with markup in it would
/// write stanzas into our own authenticated stream).
fn key_of(el: &Element) -> Result<String, DialbackError> {
    let key = el.text();
    let key = key.trim();
    if key.is_empty() || key.len() > 128 || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(DialbackError::Missing);
    }
    Ok(key.to_string())
}

/// `<db:result type='error'>` (XEP-0220 §2.4): the receiving side cannot even try, e.g.
/// the domain is not served here (`item-not-found`).
pub fn result_error(from: &str, to: &str, condition: &str) -> String {
    // RFC 6120 §8.3.3: a lack of resources is worth retrying later
    let kind = if condition == "resource-constraint" {
        "wait"
    } else {
        "cancel"
    };
    format!(
        "<db:result xmlns:db='{}' from='{}' to='{}' type='error'><error type='{kind}'>\
         <{condition} xmlns='{}'/></error></db:result>",
        ns::DIALBACK,
        escape_attr(from),
        escape_attr(to),
        ns::STANZAS
    )
}

/// What became of a verification we asked the authoritative server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It made that key.
    Valid,
    /// It did not: the key is forged.
    Invalid,
    /// It could not be reached, or it did not answer in time.
    Unreachable,
    /// We could not ask (too many verifications running).
    Busy,
    /// The pair is not one we verify for: the local domain is not served here, or the
    /// remote one is (XEP-0220 §2.4 `item-not-found`).
    NotServed,
}

impl Verdict {
    /// The verdict an authoritative server's `<db:verify type/>` gives: an error
    /// (it could not check the key, XEP-0220 §2.4) means out of reach, not forged.
    pub fn of(a: &Answer) -> Verdict {
        match a {
            Answer::Valid => Verdict::Valid,
            Answer::Invalid => Verdict::Invalid,
            Answer::Error(_) => Verdict::Unreachable,
        }
    }
}

/// Our answer to a peer's `<db:result>` (we are the receiving server, `from` our
/// domain, `to` the peer's), given the authoritative server's verdict: valid or
/// invalid, or XEP-0220 §2.4's error when we could not find out
/// (`remote-server-not-found`) or could not ask (`resource-constraint`).
pub fn verdict_answer(from: &str, to: &str, v: Verdict) -> String {
    match v {
        Verdict::Valid => result_answer(from, to, true),
        Verdict::Invalid => result_answer(from, to, false),
        Verdict::Unreachable => result_error(from, to, "remote-server-not-found"),
        Verdict::Busy => result_error(from, to, "resource-constraint"),
        Verdict::NotServed => result_error(from, to, "item-not-found"),
    }
}

/// `<db:verify>`: the receiving side asks the authoritative server.
pub fn verify_request(from: &str, to: &str, id: &str, key: &str) -> String {
    format!(
        "<db:verify xmlns:db='{}' from='{}' to='{}' id='{}'>{}</db:verify>",
        ns::DIALBACK,
        escape_attr(from),
        escape_attr(to),
        escape_attr(id),
        escape_text(key)
    )
}

/// `<db:verify type='error'>` (XEP-0220 §2.2.2, §2.4): we cannot answer, e.g. the
/// domain asked about is not served here (`item-not-found`).
pub fn verify_error(from: &str, to: &str, id: &str, condition: &str) -> String {
    format!(
        "<db:verify xmlns:db='{}' from='{}' to='{}' id='{}' type='error'><error type='cancel'>\
         <{condition} xmlns='{}'/></error></db:verify>",
        ns::DIALBACK,
        escape_attr(from),
        escape_attr(to),
        escape_attr(id),
        ns::STANZAS
    )
}

/// `<db:verify type/>`: the authoritative server's answer.
pub fn verify_answer(from: &str, to: &str, id: &str, valid: bool) -> String {
    format!(
        "<db:verify xmlns:db='{}' from='{}' to='{}' id='{}' type='{}'/>",
        ns::DIALBACK,
        escape_attr(from),
        escape_attr(to),
        escape_attr(id),
        if valid { "valid" } else { "invalid" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authoritative_server_out_of_reach_is_a_dialback_error_not_a_refusal() {
        // as on a server stream: `<error/>` is in the stream's default namespace
        let parse = |x: &str| -> Element {
            let wrapped: Element = format!("<s xmlns='{}'>{x}</s>", ns::SERVER)
                .parse()
                .expect("element");
            wrapped.children().next().expect("child").clone()
        };
        let valid = parse(&verdict_answer(
            "ours.example",
            "peer.example",
            Verdict::Valid,
        ));
        assert_eq!(
            Dialback::parse(&valid),
            Ok(Dialback::ResultAnswer {
                from: "ours.example".into(),
                to: "peer.example".into(),
                answer: Answer::Valid
            })
        );
        let invalid = verdict_answer("ours.example", "peer.example", Verdict::Invalid);
        assert!(invalid.contains("type='invalid'"), "{invalid}");
        // XEP-0220 §2.4: not "invalid" (the key was never judged) but an error
        let gone = parse(&verdict_answer(
            "ours.example",
            "peer.example",
            Verdict::Unreachable,
        ));
        assert_eq!(gone.attr("type"), Some("error"));
        assert_eq!(gone.attr("from"), Some("ours.example"));
        assert_eq!(gone.attr("to"), Some("peer.example"));
        let err = gone.get_child("error", ns::SERVER).expect("error child");
        assert_eq!(err.attr("type"), Some("cancel"));
        assert!(err.has_child("remote-server-not-found", ns::STANZAS));
        let busy = parse(&verdict_answer(
            "ours.example",
            "peer.example",
            Verdict::Busy,
        ));
        let err = busy.get_child("error", ns::SERVER).expect("error child");
        assert_eq!(err.attr("type"), Some("wait"));
        assert!(err.has_child("resource-constraint", ns::STANZAS));
    }

    #[test]
    fn an_error_answer_is_an_error_not_a_refusal() {
        // XEP-0220 §2.4: `type='error'` means the key could not be checked
        let parse = |x: &str| -> Element {
            let wrapped: Element = format!("<s xmlns='{}'>{x}</s>", ns::SERVER)
                .parse()
                .expect("element");
            wrapped.children().next().expect("child").clone()
        };
        let r = parse(&verdict_answer(
            "ours.example",
            "peer.example",
            Verdict::Unreachable,
        ));
        let Ok(Dialback::ResultAnswer { answer, .. }) = Dialback::parse(&r) else {
            panic!("not a result answer");
        };
        assert_eq!(answer, Answer::Error("remote-server-not-found".into()));
        let v = parse(&verify_error(
            "auth.example",
            "ours.example",
            "id1",
            "item-not-found",
        ));
        let Ok(Dialback::VerifyAnswer { id, answer, .. }) = Dialback::parse(&v) else {
            panic!("not a verify answer");
        };
        assert_eq!(id, "id1");
        assert_eq!(answer, Answer::Error("item-not-found".into()));
        // an authoritative server's error: out of reach, not a forged key
        assert_eq!(Verdict::of(&answer), Verdict::Unreachable);
        assert_eq!(Verdict::of(&Answer::Invalid), Verdict::Invalid);
        assert_eq!(Verdict::of(&Answer::Valid), Verdict::Valid);
        // an error naming no condition is still an error
        let bare =
            el("<verify xmlns='jabber:server:dialback' from='b' to='a' id='i' type='error'/>");
        assert!(matches!(
            Dialback::parse(&bare),
            Ok(Dialback::VerifyAnswer { answer: Answer::Error(c), .. }) if c == "undefined-condition"
        ));
        // a pair we do not serve: item-not-found, still an error
        let ns_ = parse(&verdict_answer(
            "ours.example",
            "peer.example",
            Verdict::NotServed,
        ));
        let err = ns_.get_child("error", ns::SERVER).expect("error child");
        assert!(err.has_child("item-not-found", ns::STANZAS));
    }

    #[test]
    fn a_key_with_markup_is_refused_and_never_copied_out() {
        // `&lt;` comes out of the parser as `<`: a key that would close our
        // <db:verify/> and write a stanza into our authenticated outgoing stream
        let hostile = "<db:result xmlns:db='jabber:server:dialback' from='victim.example' to='ours.example'>x&lt;/db:verify&gt;&lt;message from='alice@ours.example' to='bob@victim.example'/&gt;</db:result>";
        let el: Element = hostile.parse().expect("element");
        assert!(Dialback::parse(&el).is_err());
        for bad in ["", "   ", "ab cd", "é", &"a".repeat(129)] {
            let el: Element = format!(
                "<db:result xmlns:db='jabber:server:dialback' from='a.example' to='b.example'>{bad}</db:result>"
            )
            .parse()
            .expect("element");
            assert!(Dialback::parse(&el).is_err(), "{bad:?}");
        }
        let el: Element = "<db:verify xmlns:db='jabber:server:dialback' from='a.example' to='b.example' id='i1'>AbC123</db:verify>"
            .parse()
            .expect("element");
        assert!(matches!(
            Dialback::parse(&el),
            Ok(Dialback::VerifyRequest { key, .. }) if key == "AbC123"
        ));
        // and what we write escapes its text anyway
        let out = verify_request("a.example", "b.example", "i1", "x</db:verify><m/>");
        assert!(out.contains("x&lt;/db:verify&gt;&lt;m/&gt;"), "{out}");
    }

    #[test]
    fn key_is_the_xep_0185_construction() {
        // the expected value computed independently with Python's hashlib/hmac:
        // hmac.new(sha256(secret).hexdigest(), "example.net example.com D60000229F", sha256)
        let k = key(
            b"s3cr3tf0rd14lb4ck",
            "example.net",
            "example.com",
            "D60000229F",
        );
        assert_eq!(
            k,
            "008c689ff366b50c63d69a3e2d2c0e0e1f8404b0118eb688a0102c87cb691bdc"
        );
    }

    #[test]
    fn keys_depend_on_every_input_and_are_checked() {
        let k = key(b"secret", "a.example", "b.example", "id1");
        assert!(key_matches(b"secret", "a.example", "b.example", "id1", &k));
        assert!(key_matches(b"secret", "A.example", "b.example", "id1", &k));
        assert!(!key_matches(b"secret", "a.example", "b.example", "id2", &k));
        assert!(!key_matches(b"secret", "b.example", "a.example", "id1", &k));
        assert!(!key_matches(b"other", "a.example", "b.example", "id1", &k));
        assert!(!key_matches(
            b"secret",
            "a.example",
            "b.example",
            "id1",
            "forged"
        ));
    }

    fn el(s: &str) -> Element {
        s.parse().expect("xml")
    }

    #[test]
    fn parse_each_dialback_element() {
        let r =
            el("<result xmlns='jabber:server:dialback' from='B.example' to='a.example'>k</result>");
        assert_eq!(
            Dialback::parse(&r),
            Ok(Dialback::ResultRequest {
                from: "b.example".into(),
                to: "a.example".into(),
                key: "k".into()
            })
        );
        let a = el("<result xmlns='jabber:server:dialback' from='b' to='a' type='valid'/>");
        assert!(matches!(
            Dialback::parse(&a),
            Ok(Dialback::ResultAnswer {
                answer: Answer::Valid,
                ..
            })
        ));
        let v = el("<verify xmlns='jabber:server:dialback' from='b' to='a' id='i'>k</verify>");
        assert!(matches!(
            Dialback::parse(&v),
            Ok(Dialback::VerifyRequest { .. })
        ));
        let va =
            el("<verify xmlns='jabber:server:dialback' from='b' to='a' id='i' type='invalid'/>");
        assert!(matches!(
            Dialback::parse(&va),
            Ok(Dialback::VerifyAnswer {
                answer: Answer::Invalid,
                ..
            })
        ));
        let no_key = el("<result xmlns='jabber:server:dialback' from='b' to='a'/>");
        assert_eq!(Dialback::parse(&no_key), Err(DialbackError::Missing));
        let no_id = el("<verify xmlns='jabber:server:dialback' from='b' to='a'>k</verify>");
        assert_eq!(Dialback::parse(&no_id), Err(DialbackError::Missing));
        let other = el("<message xmlns='jabber:server' from='b' to='a'/>");
        assert_eq!(Dialback::parse(&other), Err(DialbackError::NotDialback));
    }

    #[test]
    fn written_elements_parse_back() {
        let w = result_request("a.example", "b.example", "abc");
        let parsed: Element = w.parse().expect("xml");
        assert_eq!(
            Dialback::parse(&parsed),
            Ok(Dialback::ResultRequest {
                from: "a.example".into(),
                to: "b.example".into(),
                key: "abc".into()
            })
        );
        let w = verify_answer("a", "b", "x'y", true);
        let parsed: Element = w.parse().expect("xml");
        assert_eq!(
            Dialback::parse(&parsed),
            Ok(Dialback::VerifyAnswer {
                from: "a".into(),
                to: "b".into(),
                id: "x'y".into(),
                answer: Answer::Valid
            })
        );
    }
}

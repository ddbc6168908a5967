//! XEP-0160 offline messages: which messages are kept, and how they are stamped.

use crate::stanza::set_attr;
use minidom::Element;

pub const NS_DELAY: &str = "urn:xmpp:delay";
pub const FEATURE: &str = "msgoffline";

/// Chat state notifications (XEP-0085) are not worth keeping on their own.
const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";

/// Should a message for an account with no available resource be stored?
/// Normal and chat messages are; groupchat, headline and errors are not (RFC 6121
/// §8.5.2.2.1), nor a bare chat-state notification.
pub fn should_store(msg: &Element) -> bool {
    match msg.attr("type") {
        None | Some("normal") | Some("chat") => {}
        _ => return false,
    }
    msg.children().any(|c| !c.has_ns(NS_CHATSTATES))
}

/// Add the XEP-0203 delay stamp (`from` the server, when it was stored).
pub fn stamp(msg: &mut Element, domain: &str, now: std::time::SystemTime) {
    let mut d = Element::bare("delay", NS_DELAY);
    set_attr(&mut d, "from", domain);
    set_attr(&mut d, "stamp", &rfc3339(now));
    d.append_text("Offline Storage");
    msg.append_child(d);
}

/// UTC timestamp `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Element {
        s.parse().expect("xml")
    }

    #[test]
    fn what_is_stored() {
        assert!(should_store(&m(
            "<message xmlns='jabber:client' type='chat'><body>x</body></message>"
        )));
        assert!(should_store(&m(
            "<message xmlns='jabber:client'><body>x</body></message>"
        )));
        assert!(!should_store(&m(
            "<message xmlns='jabber:client' type='headline'><body>x</body></message>"
        )));
        assert!(!should_store(&m(
            "<message xmlns='jabber:client' type='groupchat'><body>x</body></message>"
        )));
        assert!(!should_store(&m(
            "<message xmlns='jabber:client' type='error'><body>x</body></message>"
        )));
        assert!(!should_store(&m(
            "<message xmlns='jabber:client' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )));
    }

    #[test]
    fn timestamps() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}

//! Discussion history (XEP-0045 §7.2.15): the last messages of a room, sent to a new
//! occupant with XEP-0203 delay stamps, limited by what the occupant asks for.

use super::ns;
use crate::stanza::set_attr;
use minidom::Element;
use std::collections::VecDeque;

/// XEP-0082 date-time (UTC, seconds) of a Unix time.
pub fn stamp(unix: u64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Unix time of an XEP-0082 date-time; `None` when it is not one.
pub fn parse_stamp(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

struct Entry {
    stanza: Element,
    at: u64,
    /// Position in the room's history since it was created (1, 2, ...): what a
    /// persistent room has stored is everything up to one of these.
    seq: u64,
    /// Characters of the stanza as sent (for `maxchars`).
    chars: usize,
}

/// What a new occupant asked for in `<history/>`; all `None`: the room's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub max_chars: Option<usize>,
    pub max_stanzas: Option<usize>,
    pub seconds: Option<u64>,
    /// Unix time.
    pub since: Option<i64>,
}

impl Request {
    /// Read the `<history/>` child of the MUC `<x/>` of an entering presence. Values
    /// that do not parse are ignored (§7.2.15 gives no error for them).
    pub fn from_x(x: Option<&Element>) -> Request {
        let Some(h) = x.and_then(|x| x.get_child("history", ns::MUC)) else {
            return Request::default();
        };
        Request {
            max_chars: h.attr("maxchars").and_then(|v| v.parse().ok()),
            max_stanzas: h.attr("maxstanzas").and_then(|v| v.parse().ok()),
            seconds: h.attr("seconds").and_then(|v| v.parse().ok()),
            since: h.attr("since").and_then(parse_stamp),
        }
    }
}

/// The stored messages, oldest first, at most `cap`.
pub struct History {
    entries: VecDeque<Entry>,
    cap: usize,
    /// The `seq` of the newest message ever pushed (0: none).
    last: u64,
}

/// One message as a persistent room stores it: its position, when the room received
/// it (Unix time), and the stanza as kept (with its delay stamp).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    pub at: u64,
    pub xml: String,
}

impl History {
    pub fn new(cap: usize) -> History {
        History {
            entries: VecDeque::new(),
            cap,
            last: 0,
        }
    }

    /// The room's history as stored (any order, any number): the newest `cap` that
    /// parse are kept; numbering goes on after the newest.
    pub fn restore(cap: usize, stored: Vec<Stored>) -> History {
        let mut h = History::new(cap);
        let mut stored = stored;
        stored.sort_by_key(|s| s.seq);
        h.last = stored.last().map_or(0, |s| s.seq);
        let skip = stored.len().saturating_sub(cap);
        for s in stored.into_iter().skip(skip) {
            let Ok(stanza) = s.xml.parse::<Element>() else {
                continue;
            };
            h.entries.push_back(Entry {
                chars: s.xml.chars().count(),
                stanza,
                at: s.at,
                seq: s.seq,
            });
        }
        h
    }

    /// The `seq` of the newest message pushed (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// The messages still held that came after `seq`, oldest first, to be stored.
    pub fn after(&self, seq: u64) -> Vec<Stored> {
        self.entries
            .iter()
            .filter(|e| e.seq > seq)
            .map(|e| Stored {
                seq: e.seq,
                at: e.at,
                xml: crate::xml::writer::to_string(&e.stanza),
            })
            .collect()
    }

    /// How many messages the history holds at most.
    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keep a groupchat message as broadcast (without `to`), stamped with when and by
    /// whom (the room) it was received.
    pub fn push(&mut self, msg: &Element, room: &str, now: u64) {
        if self.cap == 0 {
            return;
        }
        let mut stanza = msg.clone();
        let mut delay = Element::bare("delay", ns::DELAY);
        set_attr(&mut delay, "from", room);
        set_attr(&mut delay, "stamp", &stamp(now));
        stanza.append_child(delay);
        let chars = crate::xml::writer::to_string(&stanza).chars().count();
        while self.entries.len() >= self.cap {
            self.entries.pop_front();
        }
        self.last += 1;
        self.entries.push_back(Entry {
            stanza,
            at: now,
            chars,
            seq: self.last,
        });
    }

    /// The messages a new occupant gets, oldest first: the newest ones that satisfy
    /// every limit asked for.
    pub fn select(&self, req: &Request, now: u64) -> Vec<&Element> {
        let mut chars = 0usize;
        let mut out = Vec::new();
        for e in self.entries.iter().rev() {
            if req.max_stanzas.is_some_and(|m| out.len() >= m) {
                break;
            }
            if req.seconds.is_some_and(|s| now.saturating_sub(e.at) > s) {
                break;
            }
            if req.since.is_some_and(|s| (e.at as i64) < s) {
                break;
            }
            chars += e.chars;
            if req.max_chars.is_some_and(|m| chars > m) {
                break;
            }
            out.push(&e.stanza);
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Element {
        format!(
            "<message xmlns='jabber:client' type='groupchat' from='r@s/n'><body>{n}</body></message>"
        )
        .parse()
        .expect("xml")
    }

    fn bodies(v: Vec<&Element>) -> Vec<String> {
        v.iter()
            .map(|e| {
                e.get_child("body", ns::CLIENT)
                    .map(|b| b.text())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn filled() -> History {
        let mut h = History::new(5);
        for n in 0..8 {
            h.push(&msg(n), "r@s", 1000 + 10 * n as u64);
        }
        h
    }

    #[test]
    fn keeps_the_newest_up_to_the_cap_with_delay() {
        let h = filled();
        assert_eq!(h.len(), 5);
        let all = h.select(&Request::default(), 2000);
        assert_eq!(bodies(all.clone()), ["3", "4", "5", "6", "7"]);
        let d = all[0].get_child("delay", ns::DELAY).expect("delay");
        assert_eq!(d.attr("from"), Some("r@s"));
        assert_eq!(d.attr("stamp"), Some(stamp(1030).as_str()));
    }

    #[test]
    fn maxstanzas_seconds_since_maxchars() {
        let h = filled();
        let r = |f: fn(&mut Request)| {
            let mut q = Request::default();
            f(&mut q);
            bodies(h.select(&q, 1070))
        };
        assert_eq!(r(|q| q.max_stanzas = Some(2)), ["6", "7"]);
        assert!(r(|q| q.max_stanzas = Some(0)).is_empty());
        assert_eq!(r(|q| q.seconds = Some(10)), ["6", "7"]);
        assert_eq!(r(|q| q.since = Some(1050)), ["5", "6", "7"]);
        assert!(r(|q| q.max_chars = Some(0)).is_empty());
        let one = h.entries.back().map(|e| e.chars).unwrap_or(0);
        let q = Request {
            max_chars: Some(one * 2),
            ..Request::default()
        };
        assert_eq!(bodies(h.select(&q, 1070)), ["6", "7"]);
    }

    #[test]
    fn stored_history_comes_back_numbered_on() {
        let h = filled();
        assert_eq!(h.last_seq(), 8);
        let stored = h.after(5);
        assert_eq!(stored.iter().map(|s| s.seq).collect::<Vec<_>>(), [6, 7, 8]);
        // everything held, restored into a smaller cap, out of order, one unreadable
        let mut all = h.after(0);
        all.reverse();
        all.push(Stored {
            seq: 2,
            at: 1,
            xml: "<not xml".into(),
        });
        let mut r = History::restore(3, all);
        assert_eq!(r.last_seq(), 8);
        let got = r.select(&Request::default(), 2000);
        assert_eq!(bodies(got.clone()), ["5", "6", "7"]);
        assert_eq!(
            got[0]
                .get_child("delay", ns::DELAY)
                .and_then(|d| d.attr("stamp")),
            Some(stamp(1050).as_str())
        );
        // seconds limits still work on restored entries
        let q = Request {
            seconds: Some(10),
            ..Request::default()
        };
        assert_eq!(bodies(r.select(&q, 1070)), ["6", "7"]);
        r.push(&msg(9), "r@s", 1100);
        assert_eq!(r.last_seq(), 9);
        assert_eq!(r.after(8).len(), 1);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn request_is_read_from_the_muc_element() {
        let x: Element = "<x xmlns='http://jabber.org/protocol/muc'><history maxchars='65000' \
            maxstanzas='20' seconds='180' since='1970-01-01T00:16:40Z'/></x>"
            .parse()
            .expect("xml");
        let r = Request::from_x(Some(&x));
        assert_eq!(
            r,
            Request {
                max_chars: Some(65000),
                max_stanzas: Some(20),
                seconds: Some(180),
                since: Some(1000)
            }
        );
        assert_eq!(Request::from_x(None), Request::default());
    }

    #[test]
    fn stamps_round_trip() {
        assert_eq!(stamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_stamp(&stamp(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(
            parse_stamp("2002-09-10T23:08:25.123+02:00"),
            Some(1031692105)
        );
        assert_eq!(parse_stamp("yesterday"), None);
    }
}

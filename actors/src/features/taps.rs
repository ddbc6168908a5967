//! Taps: functions that see every stanza a client's session sends or is about to write
//! to its client, whichever path it took (the direct session-to-session path or the
//! registry). A feature registers its taps in its [`super::Feature`] entry; message
//! carbons and archives belong here. A tap runs on the hot path: its first check must
//! be cheap (the blocking tap looks at an empty blocklist and returns). Taps are not
//! switched per domain: the tap of a feature that can be turned off checks that itself.

use super::FEATURES;
use minidom::Element;
use std::sync::LazyLock;
use xmpp_parsers::jid::Jid;
use xmppd_proto::stanza::{ErrorCondition, Kind};

/// Where a tap sees stanzas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapPoint {
    /// Sent by the client, addressed (`to` set), before it is routed.
    Sent,
    /// About to be written to the client.
    Delivered,
}

/// What the session a stanza passes through knows about itself.
pub struct SessionView<'a> {
    /// The account's blocklist (XEP-0191).
    pub blocked: &'a [String],
}

/// What a tap sees of a stanza.
pub struct TapCall<'a> {
    pub point: TapPoint,
    pub kind: Kind,
    /// The stanza's `type` attribute.
    pub ty: Option<&'a str>,
    /// The other party: the `to` of a sent stanza, the `from` of a delivered one.
    pub peer: &'a Jid,
    pub session: SessionView<'a>,
}

/// What becomes of the stanza.
#[derive(Debug, Clone, Copy)]
pub enum Verdict {
    Pass,
    /// Neither routed nor written; nobody is told.
    Drop,
    /// Neither routed nor written; its sender gets this error (with `error` as the
    /// whole `<error/>` element, when given).
    Refuse {
        cond: ErrorCondition,
        error: Option<fn() -> Element>,
    },
}

impl Verdict {
    pub fn passes(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}

/// A tap: where it runs and what it decides.
pub struct Tap {
    pub point: TapPoint,
    pub run: fn(&TapCall<'_>) -> Verdict,
}

static TAPS: LazyLock<Vec<&'static Tap>> =
    LazyLock::new(|| FEATURES.iter().flat_map(|f| f.taps.iter()).collect());

/// Run the taps of `call.point` in table order; the first that does not pass decides.
pub fn run(call: &TapCall<'_>) -> Verdict {
    for t in TAPS.iter().filter(|t| t.point == call.point) {
        match (t.run)(call) {
            Verdict::Pass => {}
            v => return v,
        }
    }
    Verdict::Pass
}

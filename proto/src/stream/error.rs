//! Stream errors (RFC 6120 §4.9): the conditions and their wire form.

use crate::ns;
use crate::xml::escape::escape_text;
use std::fmt;

/// Defined stream error conditions (RFC 6120 §4.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    Reset,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        use Condition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            Reset => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }
}

/// A stream error to send before closing the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: Condition,
    pub text: Option<String>,
}

impl StreamError {
    pub fn new(condition: Condition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    pub fn with_text(condition: Condition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
        }
    }

    /// `<stream:error>` followed by the closing stream tag.
    pub fn to_xml(&self) -> String {
        let mut s = format!(
            "<stream:error><{} xmlns='{}'/>",
            self.condition.as_str(),
            ns::STREAMS_ERR
        );
        if let Some(t) = &self.text {
            s.push_str(&format!(
                "<text xmlns='{}' xml:lang='en'>{}</text>",
                ns::STREAMS_ERR,
                escape_text(t)
            ));
        }
        s.push_str("</stream:error></stream:stream>");
        s
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(t) => write!(f, "{} ({t})", self.condition.as_str()),
            None => f.write_str(self.condition.as_str()),
        }
    }
}

impl std::error::Error for StreamError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_escapes_text() {
        let e = StreamError::with_text(Condition::PolicyViolation, "a<b");
        assert_eq!(
            e.to_xml(),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>a&lt;b</text>\
             </stream:error></stream:stream>"
        );
    }
}

//! XML in logs with secrets masked: SASL data and legacy/registration passwords.

/// A lazily formatted log value: the masking runs only if the record is written.
pub struct Masked<'a>(&'a [u8]);

pub fn mask(data: &[u8]) -> Masked<'_> {
    Masked(data)
}

impl slog::Value for Masked<'_> {
    fn serialize(
        &self,
        _: &slog::Record,
        key: slog::Key,
        ser: &mut dyn slog::Serializer,
    ) -> slog::Result {
        ser.emit_str(key, &masked(&String::from_utf8_lossy(self.0)))
    }
}

/// Replace the contents of elements that carry secrets with `***`.
pub fn masked(xml: &str) -> String {
    const SECRET: [&str; 5] = ["auth", "response", "password", "digest", "success"];
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    'scan: while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        rest = &rest[lt..];
        if let Some((field, after)) = secret_field(rest) {
            out.push_str(&field);
            rest = after;
            continue 'scan;
        }
        for name in SECRET {
            let Some(after) = rest.strip_prefix('<').and_then(|r| r.strip_prefix(name)) else {
                continue;
            };
            if !after.starts_with([' ', '>', '/']) {
                continue;
            }
            let Some(gt) = after.find('>') else { break };
            if after[..gt].ends_with('/') {
                break; // empty element, nothing secret
            }
            let close = format!("</{name}>");
            if let Some(end) = after[gt + 1..].find(&close) {
                out.push('<');
                out.push_str(name);
                out.push_str(&after[..=gt]);
                out.push_str("***");
                out.push_str(&close);
                rest = &after[gt + 1 + end + close.len()..];
                continue 'scan;
            }
            break;
        }
        out.push('<');
        rest = &rest[1..];
    }
    out.push_str(rest);
    out
}

/// A data form field that carries a password (`var='password'`, or `text-private`, as
/// in XEP-0077 registration forms), with its values masked, and what follows it.
fn secret_field(at: &str) -> Option<(String, &str)> {
    let after = at.strip_prefix("<field")?;
    if !after.starts_with([' ', '>', '/']) {
        return None;
    }
    let gt = after.find('>')?;
    let tag = &after[..gt];
    let secret = [
        "var='password'",
        "var=\"password\"",
        "'text-private'",
        "\"text-private\"",
    ]
    .iter()
    .any(|p| tag.contains(p));
    if !secret || tag.ends_with('/') {
        return None;
    }
    let end = after.find("</field>")?;
    let body = &after[..end];
    let mut out = String::from("<field");
    let mut rest = body;
    while let Some(v) = rest.find("<value>") {
        out.push_str(&rest[..v + "<value>".len()]);
        rest = &rest[v + "<value>".len()..];
        let Some(close) = rest.find("</value>") else {
            break;
        };
        out.push_str("***");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out.push_str("</field>");
    Some((out, &after[end + "</field>".len()..]))
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn masks_secrets() {
        assert_eq!(
            masked(
                "<auth xmlns='x' mechanism='PLAIN'>AGFsaWNlAHB3</auth><message><body>hi</body></message>"
            ),
            "<auth xmlns='x' mechanism='PLAIN'>***</auth><message><body>hi</body></message>"
        );
        assert_eq!(
            masked("<query><password>pw</password></query>"),
            "<query><password>***</password></query>"
        );
        assert_eq!(
            masked("<authors>x</authors><password/>"),
            "<authors>x</authors><password/>"
        );
        // a registration data form: the password field's value, nothing else
        assert_eq!(
            masked(
                "<x xmlns='jabber:x:data' type='submit'><field var='username'><value>bill</value></field>\
                 <field var='password'><value>Calliope</value></field></x>"
            ),
            "<x xmlns='jabber:x:data' type='submit'><field var='username'><value>bill</value></field>\
             <field var='password'><value>***</value></field></x>"
        );
        assert_eq!(
            masked("<field type=\"text-private\" var=\"pin\"><value>1234</value></field>"),
            "<field type=\"text-private\" var=\"pin\"><value>***</value></field>"
        );
    }
}

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
    }
}

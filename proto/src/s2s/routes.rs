//! Router records and domain patterns.

use crate::config::RouteSettings;

/// Does `domain` match `pattern` (`example.com`, or `*.example.com` for every
/// subdomain of example.com and example.com itself)? Case-insensitive.
pub fn matches(pattern: &str, domain: &str) -> bool {
    let p = pattern.trim_end_matches('.').to_ascii_lowercase();
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    match p.strip_prefix("*.") {
        Some(base) => d == base || d.ends_with(&format!(".{base}")),
        None => p == d,
    }
}

/// The router record for `domain`: an exact record wins over a wildcard, a longer
/// wildcard over a shorter one.
pub fn lookup<'a>(routes: &'a [RouteSettings], domain: &str) -> Option<&'a RouteSettings> {
    routes
        .iter()
        .filter(|r| matches(&r.domain, domain))
        .max_by_key(|r| {
            let exact = !r.domain.starts_with("*.");
            (exact, r.domain.len())
        })
}

/// Is `domain` in a list of patterns (e.g. the secure domains)?
pub fn listed(patterns: &[String], domain: &str) -> bool {
    patterns.iter().any(|p| matches(p, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(domain: &str, host: &str) -> RouteSettings {
        RouteSettings {
            domain: domain.into(),
            host: host.into(),
            port: 5269,
            direct_tls: false,
        }
    }

    #[test]
    fn patterns() {
        assert!(matches("company.dom", "Company.DOM"));
        assert!(!matches("company.dom", "x.company.dom"));
        assert!(matches("*.company.dom", "x.company.dom"));
        assert!(matches("*.company.dom", "a.b.company.dom"));
        assert!(matches("*.company.dom", "company.dom"));
        assert!(!matches("*.company.dom", "evilcompany.dom"));
        assert!(!matches("*.company.dom", "company.dom.evil"));
    }

    #[test]
    fn exact_records_win_then_longest_wildcard() {
        let rs = vec![
            route("*.dom", "wide"),
            route("*.company.dom", "relay"),
            route("mail.company.dom", "direct"),
        ];
        assert_eq!(
            lookup(&rs, "mail.company.dom").map(|r| r.host.as_str()),
            Some("direct")
        );
        assert_eq!(
            lookup(&rs, "x.company.dom").map(|r| r.host.as_str()),
            Some("relay")
        );
        assert_eq!(
            lookup(&rs, "other.dom").map(|r| r.host.as_str()),
            Some("wide")
        );
        assert!(lookup(&rs, "example.org").is_none());
        assert!(listed(&["*.company.dom".into()], "x.company.dom"));
        assert!(!listed(&["*.company.dom".into()], "example.org"));
    }
}

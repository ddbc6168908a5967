//! Loading the configuration: the embedded default, a file, and command-line overrides;
//! and `check-config`, which reports every problem with its line.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;
use toml::de::{DeTable, DeValue, Deserializer};
use xmppd_proto::config::{Settings, StorageBackend};

/// The default configuration, as shipped in `config/xmppd.toml`.
pub const DEFAULT: &str = include_str!("../config/xmppd.toml");

/// The shortest shared secret a trusted component may have (characters): the handshake
/// is a bare SHA-1 anyone on the path of a clear-text stream can test guesses against.
pub const MIN_COMPONENT_SECRET: usize = 8;

/// One problem found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line; 0 when the problem is not tied to a line.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

/// The WebAdmin's settings file beside the data: the keys changed from the WebAdmin,
/// merged over the configuration file at every load (start, SIGHUP, `xmppd account`).
pub const OVERLAY_FILE: &str = "settings.toml";

/// Where the configuration comes from: the file (or the embedded default), the
/// WebAdmin's overlay in its data directory, and the command line's overrides, applied
/// in that order.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    pub config: Option<PathBuf>,
    pub domain: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Loader {
    /// The settings from the file, the overlay found in the data directory, and the
    /// command line.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        self.load_with(None)
    }

    /// The same with `overlay` in place of the stored one (a change the WebAdmin is
    /// about to write, checked first).
    pub fn load_with(&self, overlay: Option<&toml::Table>) -> Result<Settings, ConfigError> {
        let path = self.config.as_deref();
        let (name, text) = read_config(path)?;
        let base = self.base();
        let mut s = match check_text(&text, &base) {
            (Some(s), problems) if problems.is_empty() => s,
            (_, problems) => {
                return Err(ConfigError::Invalid {
                    path: name,
                    problems,
                });
            }
        };
        self.apply_overrides(&mut s);
        let stored;
        let overlay = match overlay {
            Some(o) => o,
            None => {
                stored = read_overlay(&s.data_dir)?;
                &stored
            }
        };
        if overlay.is_empty() {
            return Ok(s);
        }
        let merged = with_overlay(&text, overlay).map_err(|message| ConfigError::Invalid {
            path: name.clone(),
            problems: vec![Problem { line: 0, message }],
        })?;
        match check_text(&merged, &base) {
            (Some(mut s), problems) if problems.is_empty() => {
                self.apply_overrides(&mut s);
                Ok(s)
            }
            (_, problems) => Err(ConfigError::Invalid {
                path: format!("{name} with {}", overlay_file(&s.data_dir).display()),
                // lines of the merged text mean nothing to a reader: the messages say it
                problems: problems
                    .into_iter()
                    .map(|p| Problem { line: 0, ..p })
                    .collect(),
            }),
        }
    }

    /// The keys whose list the overlay replaces with a different one (lists are not
    /// merged: the file's value no longer counts), for a warning at load: someone who
    /// edits the file would otherwise wonder why the change does nothing.
    pub fn shadowed(&self, data_dir: &Path) -> Vec<String> {
        let Ok((_, text)) = read_config(self.config.as_deref()) else {
            return Vec::new();
        };
        let (Ok(file), Ok(overlay)) = (text.parse::<toml::Table>(), read_overlay(data_dir)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        shadowed_in(&file, &overlay, "", &mut out);
        out
    }

    /// The directory relative paths of the file are taken from.
    pub fn base(&self) -> PathBuf {
        self.config
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Command-line overrides; a relative `data_dir` from a file is taken from the
    /// file's directory.
    pub fn apply_overrides(&self, s: &mut Settings) {
        if let Some(base) = self.config.as_deref().and_then(Path::parent)
            && s.data_dir.is_relative()
            && !base.as_os_str().is_empty()
        {
            s.data_dir = base.join(&s.data_dir);
        }
        if let Some(d) = &self.data_dir {
            s.data_dir = d.clone();
        }
        if let Some(name) = &self.domain {
            let mut d = s.domains.first().cloned().unwrap_or_default();
            d.name = name.to_ascii_lowercase();
            d.certificate.clear();
            d.key.clear();
            s.domains = vec![d];
        }
    }
}

fn read_config(path: Option<&Path>) -> Result<(String, String), ConfigError> {
    Ok(match path {
        Some(p) => (
            p.display().to_string(),
            std::fs::read_to_string(p).map_err(|error| ConfigError::Read {
                path: p.display().to_string(),
                error,
            })?,
        ),
        None => ("(embedded default)".to_string(), DEFAULT.to_string()),
    })
}

pub fn overlay_file(data_dir: &Path) -> PathBuf {
    data_dir.join(OVERLAY_FILE)
}

/// The WebAdmin's overlay (empty when there is none).
pub fn read_overlay(data_dir: &Path) -> Result<toml::Table, ConfigError> {
    let f = overlay_file(data_dir);
    let text = match std::fs::read_to_string(&f) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(toml::Table::new()),
        Err(error) => {
            return Err(ConfigError::Read {
                path: f.display().to_string(),
                error,
            });
        }
    };
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Invalid {
            path: f.display().to_string(),
            problems: vec![Problem {
                line: e.span().map(|s| line_of(&text, s.start)).unwrap_or(0),
                message: e.message().to_string(),
            }],
        })
}

/// Write the overlay (0600: it may hold component secrets) through a temporary file.
pub fn write_overlay(data_dir: &Path, overlay: &toml::Table) -> std::io::Result<()> {
    let text = format!(
        "# Settings changed from the WebAdmin; merged over the configuration file at\n\
         # every load. Delete a key (or the file) to return to the file's value.\n{}",
        toml::to_string(overlay).map_err(std::io::Error::other)?
    );
    crate::reload::write_atomically(&overlay_file(data_dir), text.as_bytes(), 0o600)
}

fn shadowed_in(file: &toml::Table, over: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in over {
        let path = format!("{prefix}{k}");
        match (file.get(k), v) {
            (Some(toml::Value::Table(f)), toml::Value::Table(o)) => {
                shadowed_in(f, o, &format!("{path}."), out)
            }
            (Some(f @ toml::Value::Array(_)), o @ toml::Value::Array(_)) if f != o => {
                out.push(path)
            }
            _ => {}
        }
    }
}

/// The configuration text with the overlay merged over it: tables merge key by key,
/// anything else (values, arrays such as `domain`) is replaced whole. `data_dir` is
/// never taken from the overlay (it lives there).
pub fn with_overlay(text: &str, overlay: &toml::Table) -> Result<String, String> {
    let mut doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut overlay = overlay.clone();
    overlay.remove("data_dir");
    merge(&mut doc, &overlay);
    toml::to_string(&doc).map_err(|e| e.to_string())
}

/// Merge `over` into `base`: tables recursively, other values replaced.
pub fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|t| t.matches('\n').count() + 1)
        .unwrap_or(0)
}

/// Check a configuration text; returns the settings when they could be read at all,
/// and every problem found.
pub fn check_text(text: &str, base: &Path) -> (Option<Settings>, Vec<Problem>) {
    let mut problems = Vec::new();
    let (doc, errors) = DeTable::parse_recoverable(text);
    for e in errors {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
        problems.push(Problem {
            line,
            message: e.message().to_string(),
        });
    }
    if !problems.is_empty() {
        return (None, problems);
    }
    // Each top-level key on its own, so that one bad section does not hide the others.
    let root = doc.get_ref();
    for (k, v) in root.iter() {
        let mut single = DeTable::default();
        single.insert(k.clone(), v.clone());
        let de = Deserializer::from(Spanned::new(doc.span(), single));
        if let Err(e) = Settings::deserialize(de) {
            let at = e.span().map(|s| s.start).unwrap_or(k.span().start);
            problems.push(Problem {
                line: line_of(text, at),
                message: format!("{}: {}", k.get_ref(), e.message()),
            });
        }
    }
    if !problems.is_empty() {
        return (None, problems);
    }
    let settings = match Settings::deserialize(Deserializer::from(doc.clone())) {
        Ok(s) => s,
        Err(e) => {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            problems.push(Problem {
                line,
                message: e.message().to_string(),
            });
            return (None, problems);
        }
    };
    let find = |path: &[&str]| line_of(text, key_span(root, path).unwrap_or(0));
    semantic_checks(&settings, base, &find, &mut problems);
    (Some(settings), problems)
}

/// Offset of a key path like `["domain", "0", "name"]` in the document.
fn key_span(t: &DeTable<'_>, path: &[&str]) -> Option<usize> {
    let (first, rest) = path.split_first()?;
    let (k, v) = t.iter().find(|(k, _)| k.get_ref() == first)?;
    if rest.is_empty() {
        return Some(k.span().start);
    }

    match v.get_ref() {
        DeValue::Table(t) => key_span(t, rest).or(Some(k.span().start)),
        DeValue::Array(a) => {
            let idx: usize = rest[0].parse().ok()?;
            let item = a.get(idx)?;
            match item.get_ref() {
                DeValue::Table(t) => key_span(t, &rest[1..]).or(Some(item.span().start)),
                _ => Some(item.span().start),
            }
        }
        _ => Some(k.span().start),
    }
}

fn semantic_checks(
    s: &Settings,
    base: &Path,
    find: &dyn Fn(&[&str]) -> usize,
    out: &mut Vec<Problem>,
) {
    let mut push = |path: &[&str], message: String| {
        out.push(Problem {
            line: find(path),
            message,
        })
    };
    if s.domains.is_empty() {
        push(&["domain"], "at least one [[domain]] is needed".into());
    }
    if s.http.enabled && !s.http.address.ip().is_loopback() && s.admins.is_empty() {
        push(
            &["http", "address"],
            format!(
                "{}: a non-loopback address needs an administrator (admins) to log in to the WebAdmin",
                s.http.address
            ),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, d) in s.domains.iter().enumerate() {
        let idx = i.to_string();
        if xmpp_parsers::jid::BareJid::new(&d.name)
            .map(|j| j.node().is_some())
            .unwrap_or(true)
            || d.name.is_empty()
        {
            push(
                &["domain", &idx, "name"],
                format!("'{}' is not a valid domain name", d.name),
            );
        }
        if !seen.insert(d.name.to_ascii_lowercase()) {
            push(
                &["domain", &idx, "name"],
                format!("domain '{}' is configured twice", d.name),
            );
        }
        check_cert_pair(
            &d.certificate,
            &d.key,
            base,
            &["domain", &idx, "certificate"],
            &mut push,
        );
        for item in &d.disco_items {
            if xmpp_parsers::jid::Jid::new(&item.jid).is_err() {
                push(
                    &["domain", &idx, "disco_items"],
                    format!("disco item '{}' is not a valid JID", item.jid),
                );
            }
        }
    }
    for (i, a) in s.admins.iter().enumerate() {
        let local = xmpp_parsers::jid::BareJid::new(a)
            .ok()
            .filter(|j| j.node().is_some())
            .is_some_and(|j| s.domain(j.domain().as_str()).is_some());
        if !local {
            push(
                &["admins", &i.to_string()],
                format!("administrator '{a}' is not an account (user@domain) of a hosted domain"),
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, c) in s.components.iter().enumerate() {
        let idx = i.to_string();
        let name = c.name.to_ascii_lowercase();
        let valid = !name.is_empty()
            && xmpp_parsers::jid::BareJid::new(&name).is_ok_and(|j| j.node().is_none());
        if !valid {
            push(
                &["components", &idx, "name"],
                format!("'{}' is not a valid component domain", c.name),
            );
        } else if seen.contains(&name) {
            push(
                &["components", &idx, "name"],
                format!(
                    "'{}' is a hosted domain: a component needs a domain of its own",
                    c.name
                ),
            );
        }
        if !names.insert(name) {
            push(
                &["components", &idx, "name"],
                format!("component '{}' is configured twice", c.name),
            );
        }
        if c.secret.chars().count() < MIN_COMPONENT_SECRET {
            push(
                &["components", &idx, "secret"],
                format!("a component's secret needs at least {MIN_COMPONENT_SECRET} characters"),
            );
        }
    }
    let mut addrs = std::collections::HashSet::new();
    for (i, l) in s.listeners.iter().enumerate() {
        if l.address.port() != 0 && !addrs.insert(l.address) {
            push(
                &["listener", &i.to_string(), "address"],
                format!("{} is configured twice", l.address),
            );
        }
    }
    check_cert_pair(
        &s.tls.certificate,
        &s.tls.key,
        base,
        &["tls", "certificate"],
        &mut push,
    );
    if s.limits.max_stanza_size < 10_000 {
        push(
            &["limits", "max_stanza_size"],
            "must be at least 10000 bytes (RFC 6120 §13.12)".into(),
        );
    }
    if s.limits.write_buffer < s.limits.max_stanza_size {
        push(
            &["limits", "write_buffer"],
            "must be at least max_stanza_size".into(),
        );
    }
    if !(1..=64).contains(&s.limits.max_depth) {
        push(&["limits", "max_depth"], "must be between 1 and 64".into());
    }
    if s.auth.scram_iterations < 4096 {
        push(
            &["auth", "scram_iterations"],
            "must be at least 4096 (RFC 7677)".into(),
        );
    }
    if !(1..=10).contains(&s.auth.max_failures) {
        push(&["auth", "max_failures"], "must be between 1 and 10".into());
    }
    if s.storage.backend == StorageBackend::Postgres && s.storage.postgres_url.trim().is_empty() {
        push(
            &["storage", "backend"],
            "backend = \"postgres\" needs postgres_url".into(),
        );
    }
    if !s.storage.postgres_url.is_empty()
        && s.storage.postgres_url.parse::<postgres::Config>().is_err()
    {
        push(
            &["storage", "postgres_url"],
            "not a PostgreSQL connection string (key=value pairs or a postgresql:// URL)".into(),
        );
    }
    if s.storage.write_queue == 0 {
        push(&["storage", "write_queue"], "must be at least 1".into());
    }
    if s.storage.read_connections == 0 {
        push(
            &["storage", "read_connections"],
            "must be at least 1".into(),
        );
    }
    if s.storage.write_batch == 0 {
        push(&["storage", "write_batch"], "must be at least 1".into());
    }
}

fn check_cert_pair(
    cert: &str,
    key: &str,
    base: &Path,
    path: &[&str],
    push: &mut dyn FnMut(&[&str], String),
) {
    match (cert.is_empty(), key.is_empty()) {
        (true, true) => {}
        (false, false) => {
            if let Err(e) =
                xmppd_proto::net::tls::load_certified_key(&resolve(base, cert), &resolve(base, key))
            {
                push(path, e.to_string());
            }
        }
        _ => push(
            path,
            "certificate and key go together: set both or neither".into(),
        ),
    }
}

/// A path from the configuration, relative to the file's directory.
pub fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_the_built_in_default() {
        let (s, problems) = check_text(DEFAULT, Path::new(""));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s, Some(Settings::default()));
    }

    #[test]
    fn reports_every_problem_with_its_line() {
        let text = "channels = \"many\"\nbogus = 1\n[limits]\nmax_stanza_size = 100\n[[domain]]\nname = \"a@b\"\n";
        let (_, problems) = check_text(text, Path::new(""));
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert!(lines.contains(&1), "{problems:?}");
        assert!(lines.contains(&2), "{problems:?}");
        // semantic problems are only reported once the file reads; fix the first two
        let text = "[limits]\nmax_stanza_size = 100\n[[domain]]\nname = \"a@b\"\n";
        let (_, problems) = check_text(text, Path::new(""));
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![4, 2], "{problems:?}");
    }

    #[test]
    fn storage_settings_are_checked() {
        let text = "[storage]\nbackend = \"postgres\"\nwrite_queue = 0\n";
        let (_, problems) = check_text(text, Path::new(""));
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3], "{problems:?}");
        let text =
            "[storage]\nbackend = \"postgres\"\npostgres_url = \"host=127.0.0.1 user=xmppd\"\n";
        let (s, problems) = check_text(text, Path::new(""));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.map(|s| s.storage.backend), Some(StorageBackend::Postgres));
        let (_, problems) = check_text("[storage]\nbackend = \"mysql\"\n", Path::new(""));
        assert_eq!(problems.first().map(|p| p.line), Some(2), "{problems:?}");
    }

    #[test]
    fn administrators_are_local_accounts() {
        let text = "admins = [\"boss@example.org\", \"example.org\", \"x@elsewhere.net\"]\n\
            [[domain]]\nname = \"example.org\"\n";
        let (s, problems) = check_text(text, Path::new(""));
        let msgs: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(problems.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("'example.org'") && msgs[1].contains("x@elsewhere.net"));
        let s = s.expect("the file reads");
        assert!(s.is_admin("Boss", "EXAMPLE.org"));
        assert!(!s.is_admin("boss", "elsewhere.net"));
    }

    #[test]
    fn components_are_checked() {
        let text = "[[domain]]\nname = \"example.org\"\n\
            [[components]]\nname = \"irc.example.org\"\nsecret = \"s3cret-s3cret\"\ndescription = \"IRC\"\n\
            [[components]]\nname = \"Example.org\"\nsecret = \"s3cret-s3cret\"\n\
            [[components]]\nname = \"IRC.example.org\"\nsecret = \"\"\n\
            [[components]]\nname = \"a@b\"\nsecret = \"s3cret-s3cret\"\n\
            [[components]]\nname = \"gw.example.org\"\nsecret = \"1234567\"\n";
        let (s, problems) = check_text(text, Path::new(""));
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        // hosted, twice, no secret, not a domain, a secret under 8 characters
        assert_eq!(lines, vec![8, 11, 12, 14, 18], "{problems:?}");
        assert!(
            problems[4].to_string().contains("at least 8"),
            "{problems:?}"
        );
        let s = s.expect("read");
        let irc = s.component("irc.EXAMPLE.org").expect("found");
        assert_eq!((irc.secret.as_str(), irc.replace), ("s3cret-s3cret", false));
        assert_eq!(irc.description, "IRC");
        // and the secret never shows in debug output
        assert!(!format!("{irc:?}").contains("s3cret"));
    }

    #[test]
    fn the_overlay_merges_over_the_file_and_is_checked_with_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = dir.path().join("x.toml");
        std::fs::write(
            &cfg,
            "data_dir = \"data\"\nchannels = 7\n[limits]\nmax_depth = 9\nauth_timeout = 11\n\
             [[domain]]\nname = \"example.org\"\n",
        )
        .expect("write");
        let loader = Loader {
            config: Some(cfg),
            ..Loader::default()
        };
        let s = loader.load().expect("no overlay");
        assert_eq!(s.data_dir, dir.path().join("data"));
        std::fs::create_dir_all(&s.data_dir).expect("mkdir");
        let overlay: toml::Table = "data_dir = \"/elsewhere\"\n[limits]\nmax_depth = 20\n\
            [[domain]]\nname = \"a.example\"\n[[domain]]\nname = \"b.example\"\n"
            .parse()
            .expect("toml");
        write_overlay(&s.data_dir, &overlay).expect("write overlay");
        let s = loader.load().expect("with overlay");
        // tables merge key by key, arrays are replaced, data_dir stays the file's
        assert_eq!((s.limits.max_depth, s.limits.auth_timeout), (20, 11));
        assert_eq!(s.channels, 7);
        let names: Vec<&str> = s.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["a.example", "b.example"]);
        assert_eq!(s.data_dir, dir.path().join("data"));
        // an overlay the checks refuse is reported, naming the overlay file
        let bad: toml::Table = "[limits]\nmax_depth = 99\n".parse().expect("toml");
        let e = loader
            .load_with(Some(&bad))
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains("settings.toml") && e.contains("between 1 and 64"),
            "{e}"
        );
        // the command line still wins
        let s = Loader {
            domain: Some("cli.example".into()),
            ..loader.clone()
        }
        .load()
        .expect("load");
        assert_eq!(s.domains[0].name, "cli.example");
    }

    #[test]
    fn an_overlay_list_that_shadows_the_files_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data");
        let cfg = dir.path().join("x.toml");
        std::fs::write(
            &cfg,
            "[s2s]\nsecure_domains = [\"a.example\"]\n[[domain]]\nname = \"localhost\"\n",
        )
        .expect("write");
        let loader = Loader {
            config: Some(cfg),
            ..Loader::default()
        };
        assert!(loader.shadowed(&data).is_empty());
        let o: toml::Table = "[s2s]\nsecure_domains = [\"b.example\"]\n"
            .parse()
            .expect("toml");
        write_overlay(&data, &o).expect("overlay");
        assert_eq!(loader.shadowed(&data), ["s2s.secure_domains"]);
        let o: toml::Table = "[s2s]\nsecure_domains = [\"a.example\"]\n"
            .parse()
            .expect("toml");
        write_overlay(&data, &o).expect("overlay");
        assert!(loader.shadowed(&data).is_empty());
    }

    #[test]
    fn syntax_errors_have_lines() {
        let (_, problems) = check_text("a = 1\nb = = 2\n", Path::new(""));
        assert_eq!(problems.first().map(|p| p.line), Some(2), "{problems:?}");
    }
}

//! Reloading the configuration: what a changed file means for the running server
//! (a pure comparison), the pid file, the status file the daemon writes after each
//! reload, and `xmppd reload` (SIGHUP to the daemon named by the pid file, then the
//! daemon's report).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xmppd_proto::config::Settings;

/// Top-level settings the running server cannot take over; they need a restart.
const NEEDS_RESTART: [&str; 6] = ["listener", "http", "storage", "data_dir", "workers", "tls"];

/// What a reload from `old` to `new` does: (applied now, needing a restart).
pub fn changes(old: &Settings, new: &Settings) -> (Vec<String>, Vec<String>) {
    let (mut applied, mut restart) = (Vec::new(), Vec::new());
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return (applied, restart);
    };
    for (k, v) in &b {
        if a.get(k) == Some(v) {
            continue;
        }
        match k.as_str() {
            "log_level" => applied.push(format!("log_level: {} -> {}", a[k], v)),
            "domain" => {
                let names = |s: &Settings| -> Vec<String> {
                    s.domains.iter().map(|d| d.name.clone()).collect()
                };
                let (was, now) = (names(old), names(new));
                let added: Vec<_> = now.iter().filter(|d| !was.contains(d)).cloned().collect();
                let removed: Vec<_> = was.iter().filter(|d| !now.contains(d)).cloned().collect();
                applied.push(format!(
                    "domains: added [{}], removed [{}]",
                    added.join(", "),
                    removed.join(", ")
                ));
                let certs = |s: &Settings| -> Vec<(String, String)> {
                    s.domains
                        .iter()
                        .filter(|d| now.contains(&d.name) && was.contains(&d.name))
                        .map(|d| (d.certificate.clone(), d.key.clone()))
                        .collect()
                };
                if certs(old) != certs(new) || !added.is_empty() {
                    restart.push("domain certificates (TLS is configured at start)".to_string());
                }
            }
            k if NEEDS_RESTART.contains(&k) => restart.push(k.to_string()),
            k => applied.push(format!("{k} (new connections and sessions)")),
        }
    }
    (applied, restart)
}

pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("xmppd.pid")
}

pub fn status_file(data_dir: &Path) -> PathBuf {
    data_dir.join("reload.status")
}

/// Write `text` to `path` through a temporary file (readers never see half of it).
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The daemon's status after reload number `generation`.
pub fn status_text(generation: u64, result: &Result<(Vec<String>, Vec<String>), String>) -> String {
    let mut s = format!("generation {generation}\n");
    match result {
        Ok((applied, restart)) => {
            s.push_str("result reloaded\n");
            if applied.is_empty() && restart.is_empty() {
                s.push_str("unchanged\n");
            }
            for a in applied {
                s.push_str(&format!("applied {a}\n"));
            }
            for r in restart {
                s.push_str(&format!("needs-restart {r}\n"));
            }
        }
        Err(e) => s.push_str(&format!("result failed\nerror {}\n", e.replace('\n', " "))),
    }
    s
}

fn generation(text: &str) -> u64 {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("generation "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Why `xmppd reload` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no running xmppd: {0} ({1})")]
    NoPid(String, std::io::Error),
    #[error("{0}: not a process id")]
    BadPid(String),
    #[error("xmppd (pid {0}) is not running: {1}")]
    Signal(i32, std::io::Error),
    #[error("pid {0} in the pid file is not this xmppd ({1}): a stale pid file?")]
    NotXmppd(i32, String),
    #[error("xmppd (pid {0}) did not report the reload within 10 s")]
    Timeout(i32),
    #[error("the configuration was not reloaded: {0}")]
    Failed(String),
}

/// `xmppd reload`: SIGHUP to the daemon of this data directory, then print its report.
pub fn run(data_dir: &Path) -> Result<(), ReloadError> {
    let pf = pid_file(data_dir);
    let text = std::fs::read_to_string(&pf)
        .map_err(|e| ReloadError::NoPid(pf.display().to_string(), e))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| ReloadError::BadPid(pf.display().to_string()))?;
    // a pid file left by a crash may name another process by now: signal only the
    // same program as this one
    if let (Ok(theirs), Ok(ours)) = (
        std::fs::read_link(format!("/proc/{pid}/exe")),
        std::env::current_exe(),
    ) && theirs != ours
        // the daemon's binary was replaced on disk (an upgrade) since it started
        && theirs.as_os_str().to_string_lossy().trim_end_matches(" (deleted)")
            != ours.as_os_str().to_string_lossy()
    {
        return Err(ReloadError::NotXmppd(pid, theirs.display().to_string()));
    }
    let sf = status_file(data_dir);
    let before = std::fs::read_to_string(&sf).map_or(0, |t| generation(&t));
    // SAFETY: kill(2) with a pid read from our own pid file and a valid signal number.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Err(ReloadError::Signal(pid, std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(t) = std::fs::read_to_string(&sf)
            && generation(&t) > before
        {
            let mut lines = t.lines().skip(1);
            let ok = lines.next() == Some("result reloaded");
            if !ok {
                let why = t
                    .lines()
                    .find_map(|l| l.strip_prefix("error "))
                    .unwrap_or("unknown error");
                return Err(ReloadError::Failed(why.to_string()));
            }
            println!("reloaded xmppd (pid {pid})");
            for l in lines {
                println!("  {l}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ReloadError::Timeout(pid));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmppd_proto::config::{DomainSettings, LogLevel};

    #[test]
    fn a_reload_reports_what_applies_and_what_needs_a_restart() {
        let old = Settings::default();
        let mut new = old.clone();
        assert_eq!(changes(&old, &new), (vec![], vec![]));
        new.log_level = LogLevel::AllInfo;
        new.domains.push(DomainSettings::named("new.example"));
        new.limits.max_stanza_size += 1;
        new.http.address = "127.0.0.1:1".parse().expect("addr");
        let (applied, restart) = changes(&old, &new);
        assert!(
            applied.iter().any(|a| a.starts_with("log_level")),
            "{applied:?}"
        );
        assert!(
            applied.iter().any(|a| a.contains("added [new.example]")),
            "{applied:?}"
        );
        assert!(
            applied.iter().any(|a| a.starts_with("limits")),
            "{applied:?}"
        );
        assert!(restart.contains(&"http".to_string()), "{restart:?}");
        let status = status_text(3, &Ok((applied, restart)));
        assert_eq!(generation(&status), 3);
        assert!(status.contains("needs-restart http"));
    }
}

//! Reloading the configuration: what a changed file means for the running server
//! (a pure comparison), the pid file, the status file the daemon writes after each
//! reload, and `xmppd reload` (SIGHUP to the daemon named by the pid file, then the
//! daemon's report).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use xmppd_proto::config::Settings;

/// Top-level settings the running server cannot take over; they need a restart.
/// (Certificates are not among them: every reload reads the certificate and key files
/// again, `certs::reload`, for new connections.)
const NEEDS_RESTART: [&str; 5] = ["listener", "http", "storage", "data_dir", "workers"];

/// Reported when a reload serves any certificate that differs from before (compared
/// by content, so a renewal in place at the same paths shows).
pub const CERTIFICATES_CHANGED: &str = "certificates changed (new connections)";

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
            "log_tags" => applied.push(format!("log_tags: {} -> {}", a[k], v)),
            "domain" => {
                let names = |s: &Settings| -> Vec<String> {
                    s.domains.iter().map(|d| d.name.clone()).collect()
                };
                let (was, now) = (names(old), names(new));
                let added: Vec<_> = now.iter().filter(|d| !was.contains(d)).cloned().collect();
                let removed: Vec<_> = was.iter().filter(|d| !now.contains(d)).cloned().collect();
                if added.is_empty() && removed.is_empty() {
                    applied.push("hosted domains' settings (from the next request)".to_string());
                } else {
                    applied.push(format!(
                        "domains: added [{}], removed [{}]",
                        added.join(", "),
                        removed.join(", ")
                    ));
                }
                let certs = |s: &Settings| -> Vec<(String, String, String)> {
                    s.domains
                        .iter()
                        .filter(|d| now.contains(&d.name) && !d.certificate.is_empty())
                        .map(|d| (d.name.clone(), d.certificate.clone(), d.key.clone()))
                        .collect()
                };
                if certs(old) != certs(new) {
                    applied.push("domain certificates (new connections)".to_string());
                }
            }
            "tls" => applied.push("tls certificate (new connections)".to_string()),
            k if NEEDS_RESTART.contains(&k) => restart.push(k.to_string()),
            k => applied.push(format!("{k} (new connections and sessions)")),
        }
    }
    (applied, restart)
}

/// The settings the running server takes from `new`: what needs a restart stays as it
/// runs (listeners, HTTP, storage, data directory, workers), so a second reload still
/// reports it pending instead of "unchanged". Certificates are taken: the reload read
/// them.
pub fn live(old: &Settings, mut new: Settings) -> Settings {
    new.listeners = old.listeners.clone();
    new.http = old.http.clone();
    new.storage = old.storage.clone();
    new.data_dir = old.data_dir.clone();
    new.workers = old.workers;
    new
}

/// Take `new` over in the running server — the one path of SIGHUP, `xmppd reload` and
/// the WebAdmin: certificates (re-read for new connections; a file that cannot be
/// loaded fails the whole step and changes nothing), log levels, the live settings
/// (what needs a restart stays as it runs), hosted domains and components. Returns
/// (applied, needing a restart).
pub fn apply(
    ctx: &xmppd_actors::context::Ctx,
    logs: &crate::logging::LogControl,
    base: &Path,
    new: Settings,
) -> Result<(Vec<String>, Vec<String>), String> {
    let current = ctx.settings.get();
    let (mut applied, restart) = changes(&current, &new);
    // what the server will run on: the data directory (where a generated certificate
    // lives) stays the running one
    let next = live(&current, new);
    let renewed = crate::certs::reload(&ctx.tls, &next, base, &ctx.log)
        .map_err(|e| format!("certificates: {e}"))?;
    if renewed {
        // also a renewal in place, which the settings do not show
        applied.push(CERTIFICATES_CHANGED.to_string());
    }
    logs.set(next.log_level, next.log_tags.clone());
    // settings first: a component reads them before it sends, and stops if the reload
    // no longer allows it; the registry then dismisses it and detaches what was removed
    let domains = xmppd_actors::signals::to_registry::SetDomains::from_settings(&next);
    ctx.settings.set(next);
    ctx.registry.set_domains.do_send(domains);
    slog::info!(ctx.log, "configuration reloaded"; "applied" => applied.join("; "), "needs_restart" => restart.join(", "));
    Ok((applied, restart))
}

pub fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("xmppd.pid")
}

pub fn status_file(data_dir: &Path) -> PathBuf {
    data_dir.join("reload.status")
}

/// Write `bytes` to `path` through a temporary file created with `mode` beside it,
/// synced before it is renamed over `path`: readers never see half of it, a crash
/// leaves the old or the new file, and nobody else reads it when `mode` is 0600.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    let written = out.write_all(bytes).and_then(|()| out.sync_all());
    drop(out);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // the rename itself is durable once the directory is synced
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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

/// The daemon's hold on its data directory: an exclusive `flock` on `xmppd.pid`, kept
/// for the process's lifetime. A second daemon on the same directory cannot take it and
/// refuses to start; `xmppd reload` signals only a pid whose file is locked this way.
pub struct PidLock {
    file: std::fs::File,
    path: PathBuf,
}

/// Why the daemon cannot hold its pid file.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another xmppd is running on {0} (its pid file is locked)")]
    Running(String),
    #[error("pid file {0}: {1}")]
    Io(String, std::io::Error),
}

impl PidLock {
    /// Lock `DATA_DIR/xmppd.pid` (created 0600, emptied); the pid is written later by
    /// [`PidLock::publish`], once the daemon can take a SIGHUP.
    pub fn acquire(data_dir: &Path) -> Result<Self, LockError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
        let path = pid_file(data_dir);
        let io = |e| LockError::Io(path.display().to_string(), e);
        loop {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(LockError::Running(data_dir.display().to_string()));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            // a daemon stopping meanwhile removes the file it held: lock the one at the path
            let (mine, there) = (file.metadata().map_err(io)?, std::fs::metadata(&path));
            if there.is_ok_and(|t| t.dev() == mine.dev() && t.ino() == mine.ino()) {
                file.set_len(0).map_err(io)?;
                return Ok(PidLock { file, path });
            }
        }
    }

    /// Write this process's id (one `pwrite` into the empty file: a reader sees all of
    /// it or nothing). Call it last, once the SIGHUP handler is installed.
    pub fn publish(&self) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.file
            .write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        // removed while still locked; the lock goes with the descriptor
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A pid `xmppd reload` may signal: a plain positive number above 1 (never -1 = every
/// process, 0 = the caller's group, 1 = init).
pub fn parse_pid(text: &str) -> Option<rustix::process::Pid> {
    let n: u32 = text.trim().parse().ok()?;
    let n = i32::try_from(n).ok().filter(|n| *n > 1)?;
    rustix::process::Pid::from_raw(n)
}

/// Why `xmppd reload` failed.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("no running xmppd: {0} ({1})")]
    NoPid(String, std::io::Error),
    #[error("{0}: not a process id above 1 (is the daemon still starting?)")]
    BadPid(String),
    #[error("{0}: {1}")]
    Lock(String, std::io::Error),
    #[error("{0} is not held by a running xmppd: a stale pid file (nothing signalled)")]
    Stale(String),
    #[error("xmppd (pid {0}) is not running: {1}")]
    Signal(i32, std::io::Error),
    #[error("xmppd (pid {0}) did not report the reload within 10 s")]
    Timeout(i32),
    #[error("the configuration was not reloaded: {0}")]
    Failed(String),
}

/// The pid of the daemon holding `DATA_DIR/xmppd.pid`; refused unless the file names a
/// pid above 1 and a live process holds its lock.
pub fn locked_pid(data_dir: &Path) -> Result<rustix::process::Pid, ReloadError> {
    let pf = pid_file(data_dir);
    let name = || pf.display().to_string();
    let file = std::fs::File::open(&pf).map_err(|e| ReloadError::NoPid(name(), e))?;
    let text = std::io::read_to_string(&file).map_err(|e| ReloadError::NoPid(name(), e))?;
    let pid = parse_pid(&text).ok_or_else(|| ReloadError::BadPid(name()))?;
    match file.try_lock_shared() {
        // nobody holds it: the daemon that wrote it is gone
        Ok(()) => Err(ReloadError::Stale(name())),
        Err(std::fs::TryLockError::WouldBlock) => Ok(pid),
        Err(std::fs::TryLockError::Error(e)) => Err(ReloadError::Lock(name(), e)),
    }
}

/// `xmppd reload`: SIGHUP to the daemon of this data directory, then print its report.
pub fn run(data_dir: &Path) -> Result<(), ReloadError> {
    let pid = locked_pid(data_dir)?;
    let raw = pid.as_raw_nonzero().get();
    let sf = status_file(data_dir);
    let before = std::fs::read_to_string(&sf).map_or(0, |t| generation(&t));
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .map_err(|e| ReloadError::Signal(raw, e.into()))?;
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
            println!("reloaded xmppd (pid {raw})");
            for l in lines {
                println!("  {l}");
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ReloadError::Timeout(raw));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmppd_proto::config::{DomainSettings, LogLevel};

    #[test]
    fn only_a_plain_pid_above_one_is_signalled() {
        for bad in [
            "-1",
            "0",
            "1",
            "",
            "12x",
            "+-3",
            "4294967295",
            "2147483648",
            " - 5",
        ] {
            assert!(parse_pid(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            parse_pid("1234\n").map(|p| p.as_raw_nonzero().get()),
            Some(1234)
        );
    }

    #[test]
    fn a_second_holder_is_refused_and_an_unlocked_file_is_stale() {
        let dir = tempfile::tempdir().expect("tmp");
        let lock = PidLock::acquire(dir.path()).expect("first");
        assert!(matches!(
            PidLock::acquire(dir.path()),
            Err(LockError::Running(_))
        ));
        // locked but not published yet: the daemon is starting
        assert!(matches!(
            locked_pid(dir.path()),
            Err(ReloadError::BadPid(_))
        ));
        lock.publish().expect("publish");
        assert_eq!(
            locked_pid(dir.path()).expect("held").as_raw_nonzero().get() as u32,
            std::process::id()
        );
        drop(lock);
        assert!(matches!(
            locked_pid(dir.path()),
            Err(ReloadError::NoPid(..))
        ));
        // a pid file naming every process (-1), our group (0) or init, even while
        // locked: refused before any kill(2)
        let lock = PidLock::acquire(dir.path()).expect("again");
        for bad in ["-1", "0", "1", "x"] {
            std::fs::write(pid_file(dir.path()), format!("{bad}\n")).expect("w");
            assert!(
                matches!(locked_pid(dir.path()), Err(ReloadError::BadPid(_))),
                "{bad}"
            );
        }
        drop(lock);
        // the same content, nobody holding it
        std::fs::write(pid_file(dir.path()), format!("{}\n", std::process::id())).expect("w");
        assert!(matches!(locked_pid(dir.path()), Err(ReloadError::Stale(_))));
    }

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
        // what needs a restart is not taken over: a second reload still says so
        let mut file = new.clone();
        file.domains[0].certificate = "other.pem".into();
        let running = live(&old, file.clone());
        assert_eq!(running.http, old.http);
        assert_eq!(running.limits, file.limits);
        let (applied2, restart2) = changes(&running, &file);
        assert_eq!(restart2, ["http"], "{restart2:?}");
        // certificates are re-read by every reload: taken over, and reported as applied
        assert_eq!(running.domains[0].certificate, "other.pem");
        assert!(
            changes(&new, &file)
                .0
                .iter()
                .any(|a| a.starts_with("domain certificates")),
            "a changed domain certificate applies"
        );
        assert!(
            !applied2
                .iter()
                .any(|a| a.starts_with("domain certificates")),
            "{applied2:?}"
        );
        let mut tls = file.clone();
        tls.tls.certificate = "b.pem".into();
        assert!(changes(&file, &tls).1.is_empty(), "[tls] needs no restart");
        assert!(
            !applied2.iter().any(|a| a.starts_with("log_level")),
            "{applied2:?}"
        );
        let status = status_text(3, &Ok((applied, restart)));
        assert_eq!(generation(&status), 3);
        assert!(status.contains("needs-restart http"));
    }
}

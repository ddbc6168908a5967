//! A real PostgreSQL server for tests: Debian's binaries, a temporary data directory,
//! a loopback ephemeral port, run as the `postgres` user when the tests run as root
//! (PostgreSQL refuses root). Stopped when dropped; killed if the test process dies.
//! A missing PostgreSQL fails the test with a clear message; nothing is skipped.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PgServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    /// fsync on (benchmarks); tests run with fsync off, for speed.
    durable: bool,
}

/// The newest installed PostgreSQL's bin directory.
fn bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, b)) => b,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): \
             apt-get install postgresql"
        ),
    }
}

/// uid and gid of the `postgres` user, when we must switch to it (running as root).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: plain libc queries; getpwnam's result is copied out at once.
    unsafe {
        if libc::geteuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "running as root and there is no 'postgres' user to run PostgreSQL as \
             (apt-get install postgresql creates it)"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn command(bin: &Path, who: Option<(u32, u32)>, cwd: &Path) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(cwd).env_remove("PGDATA");
    if let Some((uid, gid)) = who {
        c.uid(uid).gid(gid);
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl PgServer {
    /// initdb and start (fsync off); panics with PostgreSQL's own output when that fails.
    pub fn start() -> PgServer {
        PgServer::start_with(false)
    }

    /// Start with fsync on, as a server in production runs (benchmarks).
    pub fn start_durable() -> PgServer {
        PgServer::start_with(true)
    }

    fn start_with(durable: bool) -> PgServer {
        let bin = bin_dir();
        let who = run_as();
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some((uid, gid)) = who {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let data = dir.path().join("data");
        let out = command(&bin.join("initdb"), who, dir.path())
            .args(["-D"])
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "xmppd",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut s = PgServer {
            child: None,
            dir,
            port: 0,
            durable,
        };
        // a port taken between our probe and the server's bind: try another
        for _ in 0..5 {
            s.port = free_port();
            if s.spawn() {
                s.createdb("xmppd");
                return s;
            }
        }
        panic!("PostgreSQL did not start:\n{}", s.log());
    }

    /// Start the server on its data directory and port; false if it exited at once.
    fn spawn(&mut self) -> bool {
        let bin = bin_dir();
        let dir = self.dir.path();
        let mut cmd = command(&bin.join("postgres"), run_as(), dir);
        cmd.arg("-D")
            .arg(dir.join("data"))
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
            ])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args([
                "-c",
                if self.durable {
                    "fsync=on"
                } else {
                    "fsync=off"
                },
            ])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("postgres.log"))
                    .expect("postgres log"),
            );
        // SAFETY: prctl is async-signal-safe; the server dies with the test process
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn postgres");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", "xmppd", "-d", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("PostgreSQL did not become ready:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start again after [`PgServer::stop`], on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        assert!(self.spawn(), "PostgreSQL did not restart:\n{}", self.log());
    }

    /// Create another database on this server.
    pub fn createdb(&mut self, name: &str) {
        let out = Command::new(bin_dir().join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "xmppd",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The connection string for `storage.postgres_url`.
    pub fn url(&self, db: &str) -> String {
        format!("host=127.0.0.1 port={} user=xmppd dbname={db}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Fast shutdown (SIGINT), waited for; SIGKILL if it hangs.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

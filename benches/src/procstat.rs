//! What the driver reads about the server process (/proc) and about itself
//! (getrusage), and its file descriptor limit.

use std::time::Duration;

/// CPU time and memory of a process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// utime + stime.
    pub cpu: Duration,
    /// VmRSS.
    pub rss_kib: u64,
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Read /proc/PID/stat and /proc/PID/status. `None` if the process is gone.
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ')' : field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks();
    let cpu = Duration::from_nanos((utime + stime) * 1_000_000_000 / ticks);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(ProcSample { cpu, rss_kib })
}

/// CPU time of a process and its direct children (a database server and its backends).
pub fn tree_cpu(pid: u32) -> Duration {
    let mut total = sample(pid).map(|s| s.cpu).unwrap_or_default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return total;
    };
    for e in dir.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // after ')': state, then ppid
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += sample(child).map(|s| s.cpu).unwrap_or_default();
        }
    }
    total
}

/// This process's CPU time (user + system, all threads).
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if r != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_max as u64;
            }
        }
        rl.rlim_cur as u64
    }
}

/// CPU and memory of the server between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delta {
    pub server_cpu: Option<Duration>,
    pub driver_cpu: Duration,
}

/// A pair of (server, driver) readings taken together.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    pub server: Option<ProcSample>,
    pub driver: Duration,
    pub at: std::time::Instant,
}

impl Mark {
    pub fn now(pid: Option<u32>) -> Mark {
        Mark {
            server: pid.and_then(sample),
            driver: self_cpu(),
            at: std::time::Instant::now(),
        }
    }

    pub fn since(&self, earlier: &Mark) -> Delta {
        Delta {
            server_cpu: match (self.server, earlier.server) {
                (Some(a), Some(b)) => Some(a.cpu.saturating_sub(b.cpu)),
                _ => None,
            },
            driver_cpu: self.driver.saturating_sub(earlier.driver),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_process() {
        let s = super::sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0);
        assert!(super::raise_nofile() > 0);
    }
}

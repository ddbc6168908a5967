//! Authentication failure back-off, shared by every connection of the process.
//!
//! Failures are counted per client address (IPv6 per /64, since one host usually holds
//! a whole /64) and per account name. Once either count reaches its limit within the
//! window, further attempts from that address, or for that account, are refused with
//! `temporary-auth-failure` until the window has passed, before any credential is
//! looked up or any password hashed. Both tables are capped: expired entries go first,
//! then the least recently touched ones, so a flood of addresses or names cannot grow
//! memory without bound.

use crate::config::LimitSettings;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The limits in force (read from the live settings on every call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub per_ip: u32,
    pub per_account: u32,
    pub window: Duration,
    pub max_entries: usize,
}

impl From<&LimitSettings> for Policy {
    fn from(l: &LimitSettings) -> Self {
        Policy {
            per_ip: l.auth_failures_per_ip,
            per_account: l.auth_failures_per_account,
            window: Duration::from_secs(l.auth_throttle_window.max(1)),
            max_entries: l.auth_throttle_entries.max(1),
        }
    }
}

/// Why an attempt is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    #[error("too many failed authentications from this address")]
    Address,
    #[error("too many failed authentications for this account")]
    Account,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// Start of the counting window.
    since: Instant,
    /// Refused until then.
    blocked_until: Option<Instant>,
    /// Last failure (eviction order).
    last: Instant,
}

impl Entry {
    fn blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|t| now < t)
    }

    fn expired(&self, now: Instant, window: Duration) -> bool {
        !self.blocked(now) && now >= self.since + window
    }
}

#[derive(Debug)]
struct Table<K> {
    map: HashMap<K, Entry>,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new() -> Self {
        Table {
            map: HashMap::new(),
        }
    }

    fn blocked(&self, k: &K, now: Instant) -> bool {
        self.map.get(k).is_some_and(|e| e.blocked(now))
    }

    fn fail(&mut self, k: &K, limit: u32, p: &Policy, now: Instant) {
        if limit == 0 {
            return;
        }
        if !self.map.contains_key(k) && self.map.len() >= p.max_entries {
            self.make_room(p, now);
        }
        let e = self.map.entry(k.clone()).or_insert(Entry {
            failures: 0,
            since: now,
            blocked_until: None,
            last: now,
        });
        if e.expired(now, p.window) {
            *e = Entry {
                failures: 0,
                since: now,
                blocked_until: None,
                last: now,
            };
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures >= limit {
            e.blocked_until = Some(now + p.window);
        }
    }

    fn forget(&mut self, k: &K) {
        self.map.remove(k);
    }

    /// Drop expired entries; if that is not enough, the least recently failed eighth.
    fn make_room(&mut self, p: &Policy, now: Instant) {
        self.map.retain(|_, e| !e.expired(now, p.window));
        if self.map.len() < p.max_entries {
            return;
        }
        let mut lasts: Vec<Instant> = self.map.values().map(|e| e.last).collect();
        if lasts.is_empty() {
            return;
        }
        // the n oldest go (at least one); lasts[n - 1] is the newest of them
        let n = (lasts.len() / 8).max(1);
        let (_, cut, _) = lasts.select_nth_unstable(n - 1);
        let cut = *cut;
        let mut room = n;
        self.map.retain(|_, e| {
            if room > 0 && e.last <= cut {
                room -= 1;
                false
            } else {
                true
            }
        });
    }
}

#[derive(Debug)]
struct Tables {
    ips: Table<IpAddr>,
    accounts: Table<String>,
}

/// The shared throttle.
#[derive(Debug)]
pub struct AuthThrottle {
    inner: Mutex<Tables>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self::new()
    }
}

/// The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by
/// its /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl AuthThrottle {
    pub fn new() -> Self {
        AuthThrottle {
            inner: Mutex::new(Tables {
                ips: Table::new(),
                accounts: Table::new(),
            }),
        }
    }

    /// The process-wide throttle every connection uses.
    pub fn global() -> &'static AuthThrottle {
        static T: OnceLock<AuthThrottle> = OnceLock::new();
        T.get_or_init(AuthThrottle::new)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// May an attempt from `ip` for `account` (`user@domain`, when known) go ahead?
    pub fn check(
        &self,
        p: &Policy,
        ip: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) -> Result<(), Throttled> {
        let ip = address_key(ip);
        self.with(|t| {
            if p.per_ip > 0 && t.ips.blocked(&ip, now) {
                return Err(Throttled::Address);
            }
            if p.per_account > 0
                && let Some(a) = account
                && t.accounts.blocked(&a.to_string(), now)
            {
                return Err(Throttled::Account);
            }
            Ok(())
        })
    }

    /// A password (or proof) was wrong.
    pub fn failed(&self, p: &Policy, ip: IpAddr, account: Option<&str>, now: Instant) {
        let ip = address_key(ip);
        self.with(|t| {
            t.ips.fail(&ip, p.per_ip, p, now);
            if let Some(a) = account {
                t.accounts.fail(&a.to_string(), p.per_account, p, now);
            }
        })
    }

    /// The account authenticated: its own count starts over (the address's does not,
    /// or one valid account would let its owner guess others' passwords unthrottled).
    pub fn succeeded(&self, account: &str) {
        self.with(|t| t.accounts.forget(&account.to_string()))
    }

    /// Entries held: (addresses, accounts).
    pub fn len(&self) -> (usize, usize) {
        self.with(|t| (t.ips.map.len(), t.accounts.map.len()))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            per_ip: 3,
            per_account: 2,
            window: Duration::from_secs(60),
            max_entries: 100,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn address_blocked_after_limit_until_window_ends() {
        let t = AuthThrottle::new();
        let p = policy();
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..3 {
            assert_eq!(t.check(&p, a, None, t0), Ok(()), "attempt {i}");
            t.failed(&p, a, None, t0);
        }
        assert_eq!(t.check(&p, a, None, t0), Err(Throttled::Address));
        // other addresses are not affected
        assert_eq!(t.check(&p, ip("192.0.2.2"), None, t0), Ok(()));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(t.check(&p, a, None, later), Ok(()));
        // and the count started over
        t.failed(&p, a, None, later);
        assert_eq!(t.check(&p, a, None, later), Ok(()));
    }

    #[test]
    fn account_blocked_from_every_address() {
        let t = AuthThrottle::new();
        let p = policy();
        let t0 = Instant::now();
        t.failed(&p, ip("192.0.2.1"), Some("alice@x"), t0);
        t.failed(&p, ip("198.51.100.7"), Some("alice@x"), t0);
        assert_eq!(
            t.check(&p, ip("203.0.113.9"), Some("alice@x"), t0),
            Err(Throttled::Account)
        );
        assert_eq!(t.check(&p, ip("203.0.113.9"), Some("bob@x"), t0), Ok(()));
        t.succeeded("alice@x");
        assert_eq!(t.check(&p, ip("203.0.113.9"), Some("alice@x"), t0), Ok(()));
    }

    #[test]
    fn failures_spread_over_time_do_not_add_up() {
        let t = AuthThrottle::new();
        let p = policy();
        let mut now = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..10 {
            t.failed(&p, a, None, now);
            t.failed(&p, a, None, now);
            assert_eq!(t.check(&p, a, None, now), Ok(()));
            now += Duration::from_secs(61);
        }
    }

    #[test]
    fn ipv6_counted_per_64() {
        let t = AuthThrottle::new();
        let p = policy();
        let t0 = Instant::now();
        for i in 1..=3 {
            t.failed(&p, ip(&format!("2001:db8:1:2::{i}")), None, t0);
        }
        assert_eq!(
            t.check(&p, ip("2001:db8:1:2:ffff::1"), None, t0),
            Err(Throttled::Address)
        );
        assert_eq!(t.check(&p, ip("2001:db8:1:3::1"), None, t0), Ok(()));
        assert_eq!(
            address_key(ip("::ffff:192.0.2.1")),
            ip("192.0.2.1"),
            "mapped IPv4"
        );
    }

    #[test]
    fn a_table_of_one() {
        let t = AuthThrottle::new();
        let p = Policy {
            max_entries: 1,
            ..policy()
        };
        let t0 = Instant::now();
        for i in 0..10u32 {
            t.failed(&p, IpAddr::V4(std::net::Ipv4Addr::from(i)), None, t0);
            assert_eq!(t.len().0, 1);
        }
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let t = AuthThrottle::new();
        let p = Policy {
            per_ip: 0,
            per_account: 0,
            ..policy()
        };
        let t0 = Instant::now();
        for _ in 0..100 {
            t.failed(&p, ip("192.0.2.1"), Some("a@x"), t0);
        }
        assert_eq!(t.check(&p, ip("192.0.2.1"), Some("a@x"), t0), Ok(()));
        assert!(t.is_empty());
    }

    #[test]
    fn memory_is_bounded_under_a_flood() {
        let t = AuthThrottle::new();
        let p = Policy {
            max_entries: 1000,
            ..policy()
        };
        let t0 = Instant::now();
        for i in 0..50_000u32 {
            let now = t0 + Duration::from_millis(i as u64);
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(&p, a, Some(&format!("user{i}@x")), now);
            let (ips, accounts) = t.len();
            assert!(ips <= 1000 && accounts <= 1000, "{ips} {accounts}");
        }
        // a blocked, recently failing address survives the flood of one-off failures
        let t = AuthThrottle::new();
        let hot = ip("192.0.2.99");
        for i in 0..50_000u32 {
            let now = t0 + Duration::from_millis(i as u64);
            if i % 100 == 0 {
                t.failed(&p, hot, None, now);
            }
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(&p, a, None, now);
        }
        assert_eq!(
            t.check(&p, hot, None, t0 + Duration::from_millis(50_000)),
            Err(Throttled::Address)
        );
    }
}

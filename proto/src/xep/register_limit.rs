//! The bounds on in-band registration (XEP-0077), without actors: registrations per
//! address (IPv6 per /64 and per /48) and for the whole server per window, password
//! changes per account, and the accounts removed recently (a stream that
//! authenticated before a removal must not bind afterwards).
//!
//! Every table is bounded; a full table refuses new keys instead of forgetting live
//! windows (forgetting would reset an attacker's budget).

use crate::auth::throttle::address_key;
use crate::config::LimitSettings;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys one table remembers at most.
pub const LIMIT_ENTRIES: usize = 65_536;

/// The registration limits in force (read from the live settings on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// Registrations per address (IPv6: per /64) per window; 0: no limit.
    pub per_ip: u32,
    /// Registrations per IPv6 /48 per window; 0: no limit.
    pub per_48: u32,
    /// Registrations on the whole server per window; 0: no limit.
    pub global: u32,
    pub window: Duration,
}

impl From<&LimitSettings> for LimitPolicy {
    fn from(l: &LimitSettings) -> Self {
        LimitPolicy {
            per_ip: l.registrations_per_ip,
            per_48: l.registrations_per_48,
            global: l.registrations_global,
            window: Duration::from_secs(l.registration_window.max(1)),
        }
    }
}

/// Why a registration or password change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// This key's budget for the window is spent.
    Spent,
    /// The table is full of live windows (nobody new is counted until some end), or
    /// the server-wide budget is spent: not this key's doing.
    Full,
}

/// Counts per key in fixed windows, at most [`LIMIT_ENTRIES`] keys.
#[derive(Debug)]
pub struct Windows<K> {
    counts: HashMap<K, (u32, Instant)>,
    cap: usize,
}

impl<K: Hash + Eq + Clone> Default for Windows<K> {
    fn default() -> Self {
        Self::with_capacity(LIMIT_ENTRIES)
    }
}

impl<K: Hash + Eq + Clone> Windows<K> {
    pub fn with_capacity(cap: usize) -> Self {
        Windows {
            counts: HashMap::new(),
            cap,
        }
    }

    /// May `key` take one more (`per` per `window`)? Nothing is counted yet.
    fn check(&mut self, key: &K, per: u32, window: Duration, now: Instant) -> Result<(), Limited> {
        if per == 0 {
            return Ok(());
        }
        match self.counts.get(key) {
            Some((n, since)) if now < *since + window => {
                if *n >= per {
                    Err(Limited::Spent)
                } else {
                    Ok(())
                }
            }
            Some(_) => Ok(()),
            None => {
                if self.counts.len() >= self.cap {
                    self.counts.retain(|_, (_, since)| now < *since + window);
                }
                if self.counts.len() >= self.cap {
                    Err(Limited::Full)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Count one for `key` (after [`Windows::check`] said yes).
    fn count(&mut self, key: K, per: u32, window: Duration, now: Instant) {
        if per == 0 {
            return;
        }
        let e = self.counts.entry(key).or_insert((0, now));
        if now >= e.1 + window {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Check and count in one step.
    pub fn take(
        &mut self,
        key: K,
        per: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), Limited> {
        self.check(&key, per, window, now)?;
        self.count(key, per, window, now);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// The /48 an IPv6 address belongs to (IPv4 addresses are counted per address only).
fn prefix_48(ip: IpAddr) -> Option<[u16; 3]> {
    match address_key(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some([s[0], s[1], s[2]])
        }
        IpAddr::V4(_) => None,
    }
}

#[derive(Debug, Default)]
struct Tiers {
    per_ip: Windows<IpAddr>,
    per_48: Windows<[u16; 3]>,
    global: Windows<()>,
}

/// Registrations counted per client address (IPv6 per /64), per IPv6 /48, and for the
/// whole server, in fixed windows. One lives in the server context.
#[derive(Debug, Default)]
pub struct RegistrationLimit {
    tiers: Mutex<Tiers>,
}

impl RegistrationLimit {
    /// Take one registration for `ip`: refused when any tier's budget is spent (or its
    /// table is full); a refused attempt counts nowhere.
    pub fn take(&self, p: &LimitPolicy, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        let mut t = match self.tiers.lock() {
            Ok(g) => g,
            Err(poison) => poison.into_inner(),
        };
        let key = address_key(ip);
        let p48 = prefix_48(ip);
        // the server-wide budget spent is no fault of this address: reported as Full
        t.global
            .check(&(), p.global, p.window, now)
            .map_err(|_| Limited::Full)?;
        t.per_ip.check(&key, p.per_ip, p.window, now)?;
        if let Some(k) = &p48 {
            t.per_48.check(k, p.per_48, p.window, now)?;
        }
        t.global.count((), p.global, p.window, now);
        t.per_ip.count(key, p.per_ip, p.window, now);
        if let Some(k) = p48 {
            t.per_48.count(k, p.per_48, p.window, now);
        }
        Ok(())
    }

    /// Addresses remembered now (the per-address tier).
    pub fn len(&self) -> usize {
        match self.tiers.lock() {
            Ok(g) => g.per_ip.len(),
            Err(p) => p.into_inner().per_ip.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Password changes counted per account (`user@domain`), in fixed windows: each one
/// costs a key derivation. One lives in the server context.
#[derive(Debug, Default)]
pub struct PasswordLimit {
    accounts: Mutex<Windows<String>>,
}

impl PasswordLimit {
    pub fn take(&self, account: &str, l: &LimitSettings, now: Instant) -> Result<(), Limited> {
        let mut m = match self.accounts.lock() {
            Ok(g) => g,
            Err(poison) => poison.into_inner(),
        };
        let window = Duration::from_secs(l.password_change_window.max(1));
        m.take(
            account.to_string(),
            l.password_changes_per_account,
            window,
            now,
        )
    }
}

/// Accounts removed in-band recently, and when: a stream that authenticated with the
/// old credentials before the removal may try to bind later (after the name was even
/// registered again). Streams bind within `limits.auth_timeout`, so a record is kept
/// for that long (`keep`); at most [`LIMIT_ENTRIES`], the oldest forgotten first.
#[derive(Debug, Default)]
pub struct RecentRemovals {
    removed: Mutex<HashMap<String, Instant>>,
}

impl RecentRemovals {
    /// `account` (`user@domain`) was removed at `now`.
    pub fn record(&self, account: &str, now: Instant, keep: Duration) {
        let mut m = match self.removed.lock() {
            Ok(g) => g,
            Err(poison) => poison.into_inner(),
        };
        if m.len() >= LIMIT_ENTRIES {
            m.retain(|_, at| now < *at + keep);
            if m.len() >= LIMIT_ENTRIES
                && let Some(oldest) = m.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
        }
        m.insert(account.to_string(), now);
    }

    /// Was `account` removed after `authenticated` (so that a session authenticated
    /// then belongs to an account that is gone)?
    pub fn removed_since(&self, account: &str, authenticated: Instant) -> bool {
        let m = match self.removed.lock() {
            Ok(g) => g,
            Err(poison) => poison.into_inner(),
        };
        m.get(account).is_some_and(|at| *at >= authenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(per_ip: u32, per_48: u32, global: u32) -> LimitPolicy {
        LimitPolicy {
            per_ip,
            per_48,
            global,
            window: Duration::from_secs(60),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_limit_counts_per_address_and_window() {
        let l = RegistrationLimit::default();
        let p = policy(2, 0, 0);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        assert!(l.take(&p, a, t0).is_ok());
        assert!(l.take(&p, a, t0).is_ok());
        assert_eq!(
            l.take(&p, a, t0),
            Err(Limited::Spent),
            "third in the window"
        );
        // one /64 is one address
        assert!(l.take(&p, ip("2001:db8::1"), t0).is_ok());
        assert!(l.take(&p, ip("2001:db8::ffff"), t0).is_ok());
        assert!(l.take(&p, ip("2001:db8::1"), t0).is_err());
        // the next window starts over
        assert!(l.take(&p, a, t0 + Duration::from_secs(61)).is_ok());
        let off = policy(0, 0, 0);
        assert!((0..10).all(|_| l.take(&off, a, t0).is_ok()));
    }

    #[test]
    fn a_48_is_one_budget_however_many_64s_it_spans() {
        let l = RegistrationLimit::default();
        let p = policy(5, 3, 0);
        let t0 = Instant::now();
        for n in 0..3 {
            let a = ip(&format!("2001:db8:1:{n:x}::1"));
            assert!(l.take(&p, a, t0).is_ok(), "{a}");
        }
        assert_eq!(
            l.take(&p, ip("2001:db8:1:ff::1"), t0),
            Err(Limited::Spent),
            "a fourth /64 in the same /48"
        );
        // another /48 has its own budget; IPv4 is not counted per /48
        assert!(l.take(&p, ip("2001:db8:2::1"), t0).is_ok());
        assert!(l.take(&p, ip("192.0.2.1"), t0).is_ok());
    }

    #[test]
    fn the_whole_server_has_a_budget_per_window() {
        let l = RegistrationLimit::default();
        let p = policy(5, 5, 3);
        let t0 = Instant::now();
        for n in 1..=3 {
            assert!(l.take(&p, ip(&format!("192.0.2.{n}")), t0).is_ok());
        }
        assert_eq!(l.take(&p, ip("198.51.100.1"), t0), Err(Limited::Full));
        assert!(
            l.take(&p, ip("198.51.100.1"), t0 + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn a_full_table_refuses_instead_of_forgetting_live_windows() {
        let mut w: Windows<u32> = Windows::with_capacity(2);
        let t0 = Instant::now();
        let win = Duration::from_secs(60);
        assert!(w.take(1, 1, win, t0).is_ok());
        assert!(w.take(2, 1, win, t0).is_ok());
        assert_eq!(w.take(3, 1, win, t0), Err(Limited::Full));
        // key 1 is still spent: its window was not forgotten
        assert_eq!(w.take(1, 1, win, t0), Err(Limited::Spent));
        // once the windows end, room is made
        assert!(w.take(3, 1, win, t0 + win).is_ok());
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn password_changes_are_counted_per_account() {
        let l = PasswordLimit::default();
        let s = LimitSettings {
            password_changes_per_account: 2,
            ..LimitSettings::default()
        };
        let t0 = Instant::now();
        assert!(l.take("alice@x", &s, t0).is_ok());
        assert!(l.take("alice@x", &s, t0).is_ok());
        assert_eq!(l.take("alice@x", &s, t0), Err(Limited::Spent));
        assert!(l.take("bob@x", &s, t0).is_ok());
    }

    #[test]
    fn removals_are_remembered_against_earlier_authentications() {
        let r = RecentRemovals::default();
        let t0 = Instant::now();
        let keep = Duration::from_secs(60);
        r.record("alice@x", t0 + Duration::from_secs(5), keep);
        assert!(r.removed_since("alice@x", t0), "authenticated before");
        assert!(!r.removed_since("alice@x", t0 + Duration::from_secs(6)));
        assert!(!r.removed_since("bob@x", t0));
    }
}

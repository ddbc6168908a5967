//! Authentication failure back-off, shared by every connection of the process.
//!
//! Failures are counted per client address (IPv6 per /64, since one host usually holds
//! a whole /64) and per account name. Once either count reaches its limit within the
//! window, further attempts from that address, or for that account, are refused with
//! `temporary-auth-failure` until the window has passed, before any credential is
//! looked up or any password hashed. Both tables are capped: expired entries go first,
//! then the least recently touched ones, so a flood of addresses or names cannot grow
//! memory without bound.
//!
//! An attempt reserves its place while it runs ([`AuthThrottle::begin`]): attempts in
//! flight count against the limits with the failures, so parallel exchanges cannot all
//! try a password before the first failure is counted. An attempt that finds the budget
//! taken by others in flight is told to wait ([`Begin::Wait`]), not refused: once those
//! end, it either goes ahead (they succeeded) or is refused (they failed).
//!
//! Separately, [`PreAuth`] counts the streams from each address that have not
//! authenticated yet, against their own cap.

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
    /// Attempts running now.
    in_flight: u32,
    /// Start of the counting window.
    since: Instant,
    /// Refused until then.
    blocked_until: Option<Instant>,
    /// Last failure (eviction order).
    last: Instant,
}

impl Entry {
    /// A new counting window starting `now`.
    fn fresh(now: Instant, in_flight: u32) -> Entry {
        Entry {
            failures: 0,
            in_flight,
            since: now,
            blocked_until: None,
            last: now,
        }
    }

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

    /// Failures in the window and attempts in flight together reach `limit`.
    fn taken(&self, k: &K, limit: u32, p: &Policy, now: Instant) -> bool {
        self.map.get(k).is_some_and(|e| {
            let failures = if e.expired(now, p.window) {
                0
            } else {
                e.failures
            };
            failures.saturating_add(e.in_flight) >= limit
        })
    }

    fn reserve(&mut self, k: &K, limit: u32, p: &Policy, now: Instant) {
        if limit == 0 {
            return;
        }
        if !self.map.contains_key(k) && self.map.len() >= p.max_entries {
            self.make_room(p, now);
        }
        let e = self.map.entry(k.clone()).or_insert(Entry::fresh(now, 0));
        e.in_flight = e.in_flight.saturating_add(1);
        e.last = now;
    }

    fn release(&mut self, k: &K) {
        if let Some(e) = self.map.get_mut(k) {
            e.in_flight = e.in_flight.saturating_sub(1);
            if e.in_flight == 0 && e.failures == 0 && e.blocked_until.is_none() {
                self.map.remove(k);
            }
        }
    }

    fn fail(&mut self, k: &K, limit: u32, p: &Policy, now: Instant) {
        if limit == 0 {
            return;
        }
        if !self.map.contains_key(k) && self.map.len() >= p.max_entries {
            self.make_room(p, now);
        }
        let e = self.map.entry(k.clone()).or_insert(Entry::fresh(now, 0));
        if e.expired(now, p.window) {
            *e = Entry::fresh(now, e.in_flight);
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures >= limit {
            e.blocked_until = Some(now + p.window);
        }
    }

    /// The key's failures start over; attempts of others still in flight keep their
    /// places.
    fn forget(&mut self, k: &K) {
        match self.map.get_mut(k) {
            Some(e) if e.in_flight > 0 => {
                let in_flight = e.in_flight;
                *e = Entry::fresh(e.last, in_flight);
            }
            Some(_) => {
                self.map.remove(k);
            }
            None => {}
        }
    }

    /// Drop expired entries; if that is not enough, the least recently failed eighth.
    fn make_room(&mut self, p: &Policy, now: Instant) {
        self.map
            .retain(|_, e| e.in_flight > 0 || !e.expired(now, p.window));
        if self.map.len() < p.max_entries {
            return;
        }
        // entries with attempts in flight stay (their reservations must be found again)
        let mut lasts: Vec<Instant> = self
            .map
            .values()
            .filter(|e| e.in_flight == 0)
            .map(|e| e.last)
            .collect();
        if lasts.is_empty() {
            return;
        }
        // the n oldest go (at least one); lasts[n - 1] is the newest of them
        let n = (lasts.len() / 8).max(1);
        let (_, cut, _) = lasts.select_nth_unstable(n - 1);
        let cut = *cut;
        let mut room = n;
        self.map.retain(|_, e| {
            if room > 0 && e.in_flight == 0 && e.last <= cut {
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

    /// Start an attempt from `ip` for `account`: refused when either is blocked, told to
    /// wait when failures and attempts in flight already reach a limit, else reserved
    /// until the [`Attempt`] ends (dropping it without an outcome releases it).
    pub fn begin(
        &'static self,
        p: &Policy,
        ip: IpAddr,
        account: Option<&str>,
        now: Instant,
    ) -> Begin {
        let key = address_key(ip);
        self.with(|t| {
            if p.per_ip > 0 && t.ips.blocked(&key, now) {
                return Begin::Refused(Throttled::Address);
            }
            let acc = account.map(str::to_string);
            if p.per_account > 0
                && let Some(a) = &acc
                && t.accounts.blocked(a, now)
            {
                return Begin::Refused(Throttled::Account);
            }
            let ip_taken = p.per_ip > 0 && t.ips.taken(&key, p.per_ip, p, now);
            let acc_taken = p.per_account > 0
                && acc
                    .as_ref()
                    .is_some_and(|a| t.accounts.taken(a, p.per_account, p, now));
            if ip_taken || acc_taken {
                return Begin::Wait;
            }
            t.ips.reserve(&key, p.per_ip, p, now);
            if let Some(a) = &acc {
                t.accounts.reserve(a, p.per_account, p, now);
            }
            Begin::Go(Attempt {
                throttle: self,
                ip: key,
                account: acc,
                open: true,
            })
        })
    }

    fn release(&self, ip: &IpAddr, account: Option<&String>) {
        self.with(|t| {
            t.ips.release(ip);
            if let Some(a) = account {
                t.accounts.release(a);
            }
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

/// The answer of [`AuthThrottle::begin`].
#[derive(Debug)]
pub enum Begin {
    Go(Attempt),
    /// Attempts in flight hold the budget: ask again shortly.
    Wait,
    Refused(Throttled),
}

/// An attempt in flight; it ends as a failure, a success, or (dropped) without outcome.
#[derive(Debug)]
pub struct Attempt {
    throttle: &'static AuthThrottle,
    ip: IpAddr,
    account: Option<String>,
    open: bool,
}

impl Attempt {
    /// The password or proof was wrong: the reservation becomes a failure.
    pub fn failed(mut self, p: &Policy, now: Instant) {
        self.open = false;
        // one lock: no other attempt may take the place between release and count
        self.throttle.with(|t| {
            t.ips.release(&self.ip);
            t.ips.fail(&self.ip, p.per_ip, p, now);
            if let Some(a) = &self.account {
                t.accounts.release(a);
                t.accounts.fail(a, p.per_account, p, now);
            }
        });
    }

    /// Authenticated: the account's count starts over, the address's keeps its failures.
    pub fn succeeded(mut self) {
        self.open = false;
        self.throttle.release(&self.ip, self.account.as_ref());
        if let Some(a) = &self.account {
            self.throttle.succeeded(a);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.open {
            self.throttle.release(&self.ip, self.account.as_ref());
        }
    }
}

/// Streams from each address that have not authenticated yet, against a cap.
#[derive(Debug, Default)]
pub struct PreAuth {
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// A stream's place among its address's unauthenticated streams, given back on drop.
#[derive(Debug)]
pub struct PreAuthSlot {
    table: &'static PreAuth,
    ip: IpAddr,
}

impl PreAuth {
    /// The process-wide table every connection uses.
    pub fn global() -> &'static PreAuth {
        static T: OnceLock<PreAuth> = OnceLock::new();
        T.get_or_init(PreAuth::default)
    }

    /// Take a place for a new stream from `ip`; `None` when `cap` are already there
    /// (a cap of 0 means no cap).
    pub fn enter(&'static self, ip: IpAddr, cap: usize) -> Option<PreAuthSlot> {
        let ip = address_key(ip);
        let mut m = match self.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let n = m.entry(ip).or_insert(0);
        if cap > 0 && *n as usize >= cap {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(PreAuthSlot { table: self, ip })
    }

    /// Unauthenticated streams from `ip` now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        let m = match self.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.get(&address_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for PreAuthSlot {
    fn drop(&mut self) {
        let mut m = match self.table.counts.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
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

    fn leaked() -> &'static AuthThrottle {
        Box::leak(Box::new(AuthThrottle::new()))
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let t = leaked();
        let p = policy(); // 3 per address, 2 per account
        let ip: IpAddr = "192.0.2.7".parse().expect("ip");
        let now = Instant::now();
        let mut running = Vec::new();
        for user in ["a@x", "b@x", "c@x"] {
            match t.begin(&p, ip, Some(user), now) {
                Begin::Go(a) => running.push(a),
                other => panic!("{other:?}"),
            }
        }
        // a fourth in parallel waits instead of trying a password too
        assert!(matches!(t.begin(&p, ip, Some("d@x"), now), Begin::Wait));
        for a in running {
            a.failed(&p, now);
        }
        // the three failed: the address is blocked now
        assert!(matches!(
            t.begin(&p, ip, Some("d@x"), now),
            Begin::Refused(Throttled::Address)
        ));
    }

    #[test]
    fn success_and_abandon_give_the_place_back() {
        let t = leaked();
        let p = policy();
        let ip: IpAddr = "192.0.2.8".parse().expect("ip");
        let now = Instant::now();
        let Begin::Go(first) = t.begin(&p, ip, Some("a@x"), now) else {
            panic!("first")
        };
        let Begin::Go(second) = t.begin(&p, ip, Some("a@x"), now) else {
            panic!("second")
        };
        // two in flight for one account (limit 2): a third waits
        assert!(matches!(t.begin(&p, ip, Some("a@x"), now), Begin::Wait));
        first.succeeded();
        drop(second);
        assert!(matches!(t.begin(&p, ip, Some("a@x"), now), Begin::Go(_)));
        // nothing is kept for an address that never failed
        assert_eq!(t.len(), (0, 0));
    }

    #[test]
    fn unauthenticated_streams_per_address_are_capped() {
        let table: &'static PreAuth = Box::leak(Box::new(PreAuth::default()));
        let ip: IpAddr = "2001:db8::1".parse().expect("ip");
        let same_64: IpAddr = "2001:db8::2".parse().expect("ip");
        let a = table.enter(ip, 2).expect("first");
        let b = table.enter(same_64, 2).expect("second, same /64");
        assert!(table.enter(ip, 2).is_none(), "third refused");
        assert!(table.enter("2001:db9::1".parse().expect("ip"), 2).is_some());
        drop(a);
        let c = table.enter(ip, 2).expect("a place came free");
        drop((b, c));
        assert_eq!(table.count(ip), 0);
        assert!(table.enter(ip, 0).is_some(), "0: no cap");
    }

    #[test]
    fn a_success_keeps_the_places_of_others_in_flight() {
        let t = leaked();
        let p = policy(); // 2 per account
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        let other: IpAddr = "192.0.2.10".parse().expect("ip");
        let now = Instant::now();
        let Begin::Go(mine) = t.begin(&p, ip, Some("a@x"), now) else {
            panic!("mine")
        };
        let Begin::Go(theirs) = t.begin(&p, other, Some("a@x"), now) else {
            panic!("theirs")
        };
        mine.succeeded();
        // the other attempt still holds its place: one more fits, not two
        let Begin::Go(third) = t.begin(&p, ip, Some("a@x"), now) else {
            panic!("third")
        };
        assert!(matches!(t.begin(&p, ip, Some("a@x"), now), Begin::Wait));
        theirs.failed(&p, now);
        third.failed(&p, now);
        // both failures were counted against the account
        assert!(matches!(
            t.begin(&p, other, Some("a@x"), now),
            Begin::Refused(Throttled::Account)
        ));
    }
}

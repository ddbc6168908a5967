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
#[path = "throttle_tests.rs"]
mod tests;

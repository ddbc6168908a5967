//! Unit tests of the authentication throttle (`throttle.rs`).

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

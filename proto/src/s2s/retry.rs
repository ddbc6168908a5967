//! When an outbound queue tries again, and which waiting stanzas it gives up on.

use std::time::{Duration, Instant};

/// The wait before the next attempt: `initial` after the first failure, then doubled
/// each time, never more than `max` (both at least one second).
pub fn next_backoff(previous: Duration, initial: Duration, max: Duration) -> Duration {
    let one = Duration::from_secs(1);
    let (initial, max) = (initial.max(one), max.max(one));
    if previous.is_zero() {
        initial.min(max)
    } else {
        previous.saturating_mul(2).min(max)
    }
}

/// How many of the stanzas waiting (their arrival times, oldest first) have waited
/// `limit` or longer at `now` and are to be returned to their senders.
pub fn expired(
    arrivals: impl IntoIterator<Item = Instant>,
    now: Instant,
    limit: Duration,
) -> usize {
    arrivals
        .into_iter()
        .take_while(|at| now.saturating_duration_since(*at) >= limit)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let s = Duration::from_secs;
        let mut b = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..6 {
            b = next_backoff(b, s(5), s(60));
            seen.push(b.as_secs());
        }
        assert_eq!(seen, vec![5, 10, 20, 40, 60, 60]);
        assert_eq!(next_backoff(Duration::ZERO, s(0), s(0)), s(1));
        assert_eq!(next_backoff(Duration::ZERO, s(90), s(60)), s(60));
    }

    #[test]
    fn only_the_oldest_that_waited_long_enough_expire() {
        let now = Instant::now();
        let ago = |n| now - Duration::from_secs(n);
        let limit = Duration::from_secs(300);
        assert_eq!(
            expired([ago(400), ago(300), ago(299), ago(10)], now, limit),
            2
        );
        assert_eq!(expired([ago(10)], now, limit), 0);
        assert_eq!(expired([], now, limit), 0);
    }
}

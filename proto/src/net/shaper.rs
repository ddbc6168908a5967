//! Per-connection rate shaping: a token bucket counted in bytes.
//!
//! The I/O task asks how long to wait before its next read and reports how much each
//! read returned. A peer that sends faster than the rate is not cut off and loses
//! nothing: its bytes wait in the kernel's socket buffer, and TCP flow control slows
//! the sender down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Reads delayed by shaping since the process started (all connections).
pub static DELAYED_READS: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct Shaper {
    /// Bytes per second.
    rate: f64,
    /// Most bytes that may be read at once above the rate.
    burst: f64,
    /// Bytes that may be read now; negative after a read took more than was there.
    tokens: f64,
    last: Instant,
}

impl Shaper {
    /// A full bucket; `None` when `rate` is 0 (shaping off).
    pub fn new(rate: u64, burst: u64, now: Instant) -> Option<Shaper> {
        (rate > 0).then(|| {
            let burst = burst.max(1) as f64;
            Shaper {
                rate: rate as f64,
                burst,
                tokens: burst,
                last: now,
            }
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Account for `n` bytes just read.
    pub fn consume(&mut self, n: usize, now: Instant) {
        self.refill(now);
        self.tokens -= n as f64;
    }

    /// How long to wait before the next read (zero when it may happen now).
    pub fn delay(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        // whole milliseconds, rounded up: the bucket is back at zero afterwards
        let ms = (-self.tokens / self.rate * 1000.0).ceil();
        Duration::from_millis(ms.min(60_000.0) as u64)
    }

    /// How many bytes the next read may take (the tokens in the bucket, at least
    /// `floor` so that a read always makes progress).
    pub fn allowance(&mut self, now: Instant, floor: usize) -> usize {
        self.refill(now);
        (self.tokens.max(0.0) as usize).max(floor)
    }

    /// Count a read that had to wait (for the monitoring page).
    pub fn note_delayed() {
        DELAYED_READS.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_when_rate_is_zero() {
        assert!(Shaper::new(0, 100, Instant::now()).is_none());
    }

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut s = Shaper::new(1000, 4000, t0).expect("on");
        // the burst goes through without waiting
        for _ in 0..4 {
            assert_eq!(s.delay(t0), Duration::ZERO);
            s.consume(1000, t0);
        }
        assert_eq!(s.delay(t0), Duration::ZERO);
        s.consume(500, t0);
        // 500 bytes over: half a second at 1000 B/s
        assert_eq!(s.delay(t0), Duration::from_millis(500));
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(s.delay(t1), Duration::ZERO);
        // over a long run the average is the rate: 10 s moves at most burst + 10 000 bytes
        let mut now = t1;
        let mut moved = 0usize;
        let end = t1 + Duration::from_secs(10);
        while now < end {
            let d = s.delay(now);
            if d.is_zero() {
                s.consume(4096, now);
                moved += 4096;
            } else {
                now += d;
            }
        }
        assert!(moved <= 10_000 + 4096 * 2, "{moved}");
        assert!(moved >= 10_000 - 4096, "{moved}");
    }

    #[test]
    fn idle_time_refills_at_most_the_burst() {
        let t0 = Instant::now();
        let mut s = Shaper::new(1000, 2000, t0).expect("on");
        s.consume(2000, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(s.delay(later), Duration::ZERO);
        s.consume(2500, later);
        assert_eq!(s.delay(later), Duration::from_millis(500));
    }
}

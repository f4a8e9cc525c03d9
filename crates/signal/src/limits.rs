//! Named limits with defaults, and the per-connection rate limiter.

use std::time::{Duration, Instant};

/// Every limit the signaling server enforces. The server's flags set these.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Participants per room.
    pub room_capacity: usize,
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Sustained messages per second per connection.
    pub rate_per_sec: f64,
    /// Messages a connection may send in a burst.
    pub rate_burst: f64,
    /// Consecutive refused (rate-limited) messages after which the connection is closed.
    pub max_refusals: u32,
    /// Longest display name, in characters.
    pub max_name_chars: usize,
    /// How long after its connection dropped a participant may resume its id (with its token).
    pub resume_grace: Duration,
    /// How long a connection may stay outside any room (after connecting or leaving).
    pub join_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            room_capacity: 2,
            max_message_bytes: 64 * 1024,
            rate_per_sec: 50.0,
            rate_burst: 200.0,
            max_refusals: 100,
            max_name_chars: 64,
            resume_grace: Duration::from_secs(60),
            join_timeout: Duration::from_secs(10),
        }
    }
}

/// A token bucket. Time comes in from the caller, so tests drive it without sleeping.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    tokens: f64,
    rate_per_sec: f64,
    burst: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        RateLimiter { tokens: burst, rate_per_sec, burst, last: now }
    }

    /// Takes one token if there is one.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes `amount` tokens, going into debt if there are fewer, and returns how long
    /// until the bucket is out of debt again (zero when it never went in). For limits that
    /// push back (stop reading) instead of refusing, e.g. bytes per second.
    pub fn debit(&mut self, amount: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate_per_sec).min(self.burst) - amount;
        if self.tokens >= 0.0 || self.rate_per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / self.rate_per_sec)
    }

    /// How long until one more message would be allowed.
    pub fn wait_time(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate_per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate_per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10.0, 5.0, t0);
        assert_eq!((0..8).filter(|_| rl.allow(t0)).count(), 5, "burst");
        assert!(rl.wait_time() > Duration::ZERO);
        let t1 = t0 + Duration::from_millis(300); // 3 tokens back
        assert_eq!((0..8).filter(|_| rl.allow(t1)).count(), 3);
        let t2 = t1 + Duration::from_secs(60); // capped at the burst
        assert_eq!((0..20).filter(|_| rl.allow(t2)).count(), 5);
    }

    #[test]
    fn debit_goes_into_debt_and_says_how_long_it_lasts() {
        let t0 = Instant::now();
        let mut bytes = RateLimiter::new(1000.0, 2000.0, t0);
        assert_eq!(bytes.debit(1500.0, t0), Duration::ZERO, "within the burst");
        // 500 left; 1500 more puts the bucket 1000 in debt: one second at 1000/s.
        assert_eq!(bytes.debit(1500.0, t0), Duration::from_secs(1));
        // Half a second later the debt is 500: half a second to go, plus what is taken now.
        assert_eq!(bytes.debit(0.0, t0 + Duration::from_millis(500)), Duration::from_millis(500));
        assert_eq!(bytes.debit(0.0, t0 + Duration::from_secs(1)), Duration::ZERO);
    }
}

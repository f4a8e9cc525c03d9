//! Token buckets per source address in a bounded table, so a UDP service cannot be
//! turned into an amplifier against any one address (sources of UDP are easily forged:
//! the "source" is then the victim).
//!
//! IPv6 sources are grouped by /64 (one host usually owns a whole /64). When the table
//! is full, buckets that have refilled completely are forgotten (a new bucket starts
//! full, so nothing is lost); if none has, unknown sources are refused until one does.
//! Time comes in from the caller.

use callsight_signal::limits::RateLimiter;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SourceLimits {
    /// Sustained requests per second per source.
    pub rate_per_sec: f64,
    /// Requests a source may send in a burst.
    pub burst: f64,
    /// Sources tracked at once.
    pub max_sources: usize,
}

pub struct SourceLimiter {
    limits: SourceLimits,
    table: HashMap<IpAddr, (RateLimiter, Instant)>,
    /// A bucket untouched this long has refilled completely.
    idle: Duration,
    next_sweep: Option<Instant>,
}

impl SourceLimiter {
    pub fn new(limits: SourceLimits) -> Self {
        let idle = if limits.rate_per_sec > 0.0 {
            Duration::try_from_secs_f64(limits.burst / limits.rate_per_sec).unwrap_or(Duration::MAX)
        } else {
            Duration::MAX
        };
        SourceLimiter { limits, table: HashMap::new(), idle, next_sweep: None }
    }

    /// Whether one more request from `source` may be answered now.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let key = source_key(source);
        if let Some((bucket, seen)) = self.table.get_mut(&key) {
            *seen = now;
            return bucket.allow(now);
        }
        if self.table.len() >= self.limits.max_sources && !self.sweep(now) {
            return false;
        }
        let mut bucket = RateLimiter::new(self.limits.rate_per_sec, self.limits.burst, now);
        let allowed = bucket.allow(now);
        self.table.insert(key, (bucket, now));
        allowed
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Forgets refilled buckets, at most once per refill time (a full table under a
    /// spoofed flood must not cost a scan per packet). Returns whether there is room.
    fn sweep(&mut self, now: Instant) -> bool {
        if self.next_sweep.is_some_and(|t| now < t) {
            return false;
        }
        let idle = self.idle;
        self.table.retain(|_, (_, seen)| now.saturating_duration_since(*seen) < idle);
        self.next_sweep = now.checked_add(idle.min(Duration::from_secs(3600)));
        self.table.len() < self.limits.max_sources
    }
}

/// The address a bucket belongs to: IPv4 as is, IPv6 by its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: SourceLimits = SourceLimits { rate_per_sec: 10.0, burst: 20.0, max_sources: 3 };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(LIMITS);
        assert_eq!((0..50).filter(|_| l.allow(ip("192.0.2.1"), t0)).count(), 20);
        assert!(l.allow(ip("192.0.2.2"), t0), "another source is not affected");
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..50).filter(|_| l.allow(ip("192.0.2.1"), t1)).count(), 5);
    }

    #[test]
    fn ipv6_hosts_share_a_bucket_per_64() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(LIMITS);
        let allowed = (0..40u16).filter(|i| l.allow(ip(&format!("2001:db8:1:2::{i:x}")), t0)).count();
        assert_eq!(allowed, 20);
        assert_eq!(l.len(), 1);
        assert!(l.allow(ip("::ffff:192.0.2.9"), t0));
        assert!(l.table.contains_key(&ip("192.0.2.9")), "v4-mapped counts as v4");
    }

    #[test]
    fn the_table_is_bounded_and_forgets_refilled_sources() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(LIMITS);
        for i in 1..=3 {
            assert!(l.allow(ip(&format!("192.0.2.{i}")), t0));
        }
        assert!(!l.allow(ip("192.0.2.4"), t0), "full: a new source waits");
        assert_eq!(l.len(), 3);
        // Still full a moment later: no sweep before the refill time.
        assert!(!l.allow(ip("192.0.2.5"), t0 + Duration::from_millis(10)));
        // After the refill time (burst / rate = 2 s) idle sources are forgotten.
        let t2 = t0 + Duration::from_secs(3);
        assert!(l.allow(ip("192.0.2.4"), t2));
        assert_eq!(l.len(), 1);
    }
}

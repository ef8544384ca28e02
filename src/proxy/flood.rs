//! Per-source request rate limiting, in the spirit of Kamailio's pike module: one token bucket
//! per source IP address, refilled at `requests_per_second` up to `burst` tokens.
//!
//! The table is bounded. A source seen before costs a map lookup and no allocation. A new
//! source gets its own bucket while the table has room, otherwise it shares one overflow
//! bucket with every other source that found the table full. [`FloodGuard::sweep`] removes
//! buckets that have refilled completely, because a new bucket for that source would start
//! in the same state.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::config::{FloodAction, FloodConfig};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Refills the bucket up to `now` and takes one token when there is one.
    fn take(&mut self, rate: f64, burst: f64, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        // A clock that goes backwards (fuzz inputs, tests) must not move the mark back.
        if now > self.refilled_at {
            self.refilled_at = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The per-source limiter shared by all workers.
#[derive(Debug)]
pub struct FloodGuard {
    rate: f64,
    burst: f64,
    pub(super) action: FloodAction,
    pub(super) exempt_trusted: bool,
    max_sources: usize,
    buckets: DashMap<IpAddr, Bucket>,
    overflow: Mutex<Option<Bucket>>,
}

impl FloodGuard {
    /// Returns `None` when the configuration turns the limit off.
    pub fn new(config: &FloodConfig) -> Option<Self> {
        if config.requests_per_second == 0 {
            return None;
        }
        Some(Self {
            rate: f64::from(config.requests_per_second),
            burst: f64::from(config.burst.max(1)),
            action: config.action,
            exempt_trusted: config.exempt_trusted,
            max_sources: config.max_sources.max(1),
            buckets: DashMap::new(),
            overflow: Mutex::new(None),
        })
    }

    /// Takes one token from the bucket of `source`; returns false when the source is over its
    /// rate.
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        if let Some(mut bucket) = self.buckets.get_mut(&source) {
            return bucket.take(self.rate, self.burst, now);
        }
        if self.buckets.len() < self.max_sources {
            // Two workers may insert the same source at once; the entry API keeps one bucket.
            let mut bucket = self
                .buckets
                .entry(source)
                .or_insert_with(|| Bucket::full(self.burst, now));
            return bucket.take(self.rate, self.burst, now);
        }
        let mut overflow = self
            .overflow
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        overflow
            .get_or_insert_with(|| Bucket::full(self.burst, now))
            .take(self.rate, self.burst, now)
    }

    /// Removes buckets that have refilled to `burst` by `now`; returns how many were removed.
    pub fn sweep(&self, now: Instant) -> usize {
        let refill_time = Duration::from_secs_f64(self.burst / self.rate);
        let before = self.buckets.len();
        self.buckets.retain(|_, bucket| {
            let idle = now.saturating_duration_since(bucket.refilled_at);
            idle < refill_time
        });
        before.saturating_sub(self.buckets.len())
    }

    /// Source addresses with a bucket of their own.
    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(rate: u32, burst: u32, max_sources: usize) -> FloodGuard {
        FloodGuard::new(&FloodConfig {
            requests_per_second: rate,
            burst,
            action: FloodAction::Drop,
            exempt_trusted: true,
            max_sources,
        })
        .expect("limit is on")
    }

    #[test]
    fn zero_rate_turns_limit_off() {
        let config = FloodConfig::default();
        assert_eq!(config.requests_per_second, 0);
        assert!(FloodGuard::new(&config).is_none());
    }

    #[test]
    fn burst_then_refill() {
        let guard = guard(10, 3, 16);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let start = Instant::now();
        for i in 0..3 {
            assert!(guard.allow(ip, start), "request {i} of the burst rejected");
        }
        assert!(
            !guard.allow(ip, start),
            "fourth request in the same instant allowed"
        );
        // 10 per second: one token after 100 ms.
        assert!(guard.allow(ip, start + Duration::from_millis(100)));
        assert!(!guard.allow(ip, start + Duration::from_millis(100)));
    }

    #[test]
    fn sources_are_independent() {
        let guard = guard(1, 1, 16);
        let now = Instant::now();
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(guard.allow(a, now));
        assert!(!guard.allow(a, now));
        assert!(guard.allow(b, now), "second source limited by the first");
    }

    #[test]
    fn full_table_shares_overflow_bucket() {
        let guard = guard(1, 1, 2);
        let now = Instant::now();
        for last in 1..=2u8 {
            assert!(guard.allow(IpAddr::from([198, 51, 100, last]), now));
        }
        assert_eq!(guard.tracked_sources(), 2);
        assert!(guard.allow(IpAddr::from([198, 51, 100, 3]), now));
        assert!(
            !guard.allow(IpAddr::from([198, 51, 100, 4]), now),
            "overflow sources do not share a bucket"
        );
        assert_eq!(guard.tracked_sources(), 2, "table grew past max_sources");
    }

    #[test]
    fn sweep_removes_refilled_buckets() {
        let guard = guard(10, 5, 16);
        let now = Instant::now();
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        assert!(guard.allow(ip, now));
        assert_eq!(guard.sweep(now + Duration::from_millis(100)), 0);
        assert_eq!(guard.sweep(now + Duration::from_millis(600)), 1);
        assert_eq!(guard.tracked_sources(), 0);
    }
}

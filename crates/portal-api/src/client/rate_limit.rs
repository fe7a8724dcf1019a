//! Client-side rate limiting: a token bucket in its GCRA form.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A request rate: `per_minute` requests a minute on average, with bursts of up to `burst`
/// requests at once.
///
/// Over any window of `w` seconds at most `burst + per_minute * w / 60` requests start.
/// Portal's limits count requests per minute; keep `burst` small if the account is near its
/// limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimit {
    per_minute: u32,
    burst: u32,
}

impl RateLimit {
    /// Portal's published limit for the Client and Custodian APIs: 200 requests a minute
    /// (burst 10).
    pub const CLIENT_API_DEFAULT: Self = Self {
        per_minute: 200,
        burst: 10,
    };

    /// Portal's published limit for the Enclave MPC API: 50 requests a minute (burst 5).
    pub const MPC_API_DEFAULT: Self = Self {
        per_minute: 50,
        burst: 5,
    };

    /// `per_minute` requests a minute, burst 1. Values of 0 are raised to 1.
    #[must_use]
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            burst: 1,
        }
    }

    /// Sets how many requests may start at once. Values of 0 are raised to 1.
    #[must_use]
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// Requests per minute.
    #[must_use]
    pub fn requests_per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Requests that may start at once.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Time between two requests at the sustained rate.
    fn interval(&self) -> Duration {
        Duration::from_secs(60)
            .checked_div(self.per_minute)
            .unwrap_or(Duration::from_secs(60))
    }
}

/// Shared limiter state. Each `acquire` reserves the next slot, so waiters are served in
/// order and never spin.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: Option<RateLimit>,
    /// Theoretical arrival time of the next request.
    tat: Mutex<Option<Instant>>,
}

impl RateLimiter {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limit,
            tat: Mutex::new(None),
        }
    }

    pub(crate) fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    /// Waits until a request may start.
    pub(crate) async fn acquire(&self) {
        if let Some(at) = self.reserve(Instant::now()) {
            tokio::time::sleep_until(at).await;
        }
    }

    /// Reserves a slot and returns when it starts (`None` = now).
    fn reserve(&self, now: Instant) -> Option<Instant> {
        let limit = self.limit?;
        let interval = limit.interval();
        let tolerance = interval
            .checked_mul(limit.burst.saturating_sub(1))
            .unwrap_or(Duration::MAX);
        let mut tat = self.tat.lock().unwrap_or_else(PoisonError::into_inner);
        let current = tat.map_or(now, |t| t.max(now));
        // The request may start once `current - tolerance` is reached.
        let start = current.checked_sub(tolerance).map_or(now, |s| s.max(now));
        *tat = Some(current.checked_add(interval).unwrap_or(current));
        (start > now).then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_spaced() {
        let limiter = RateLimiter::new(Some(RateLimit::per_minute(600).with_burst(3)));
        let now = Instant::now();
        // Three at once, then one every 100 ms.
        assert_eq!(limiter.reserve(now), None);
        assert_eq!(limiter.reserve(now), None);
        assert_eq!(limiter.reserve(now), None);
        assert_eq!(limiter.reserve(now), Some(now + Duration::from_millis(100)));
        assert_eq!(limiter.reserve(now), Some(now + Duration::from_millis(200)));
        // After a long pause the burst is available again.
        let later = now + Duration::from_secs(10);
        assert_eq!(limiter.reserve(later), None);
        assert_eq!(limiter.reserve(later), None);
        assert_eq!(limiter.reserve(later), None);
        assert!(limiter.reserve(later).is_some());
    }

    #[test]
    fn unlimited_never_waits() {
        let limiter = RateLimiter::new(None);
        let now = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.reserve(now), None);
        }
    }

    #[test]
    fn defaults_follow_portal_limits() {
        assert_eq!(RateLimit::CLIENT_API_DEFAULT.requests_per_minute(), 200);
        assert_eq!(RateLimit::MPC_API_DEFAULT.requests_per_minute(), 50);
        assert_eq!(RateLimit::per_minute(0).requests_per_minute(), 1);
        assert_eq!(RateLimit::per_minute(5).with_burst(0).burst(), 1);
        assert_eq!(
            RateLimit::per_minute(50).interval(),
            Duration::from_millis(1200)
        );
    }
}

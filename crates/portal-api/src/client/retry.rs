//! Retry policy: exponential backoff with jitter, honouring `Retry-After`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::error::{Error, TransportKind};

/// How failed requests are retried.
///
/// A request is retried only if it is safe to repeat: GETs and the status and ciphertext
/// PATCHes on any retryable error ([`Error::is_retryable`]); requests that create something or
/// change state irreversibly (`/v1/generate`, `/v1/backup`, `/v1/recover`, client creation,
/// session tokens, eject) only when the connection could not be made, so the server provably
/// never saw them.
///
/// The wait before retry `n` (0-based) is `Retry-After` when the server sent one (in seconds),
/// otherwise a random duration between half and all of `min(max_backoff, initial_backoff *
/// 2^n)`. A `Retry-After` longer than `max_retry_after` is not waited for: the error is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConfig {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Backoff before the first retry.
    pub initial_backoff: Duration,
    /// Upper bound of the backoff.
    pub max_backoff: Duration,
    /// Longest `Retry-After` the client waits for.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// No retries at all.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Sets the number of retries after the first attempt.
    #[must_use]
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Sets the backoff before the first retry.
    #[must_use]
    pub fn with_initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// Sets the upper bound of the backoff.
    #[must_use]
    pub fn with_max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Sets the longest `Retry-After` the client waits for.
    #[must_use]
    pub fn with_max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The wait before retry number `retry` (0-based) after `error`, or `None` when the error
    /// must be returned.
    pub(crate) fn delay(&self, retry: u32, error: &Error, policy: Replay) -> Option<Duration> {
        if retry >= self.max_retries || !policy.allows(error) {
            return None;
        }
        match error.retry_after() {
            Some(wait) if wait > self.max_retry_after => None,
            Some(wait) => Some(wait),
            None => Some(self.backoff(retry)),
        }
    }

    fn backoff(&self, retry: u32) -> Duration {
        let ceiling = 2u32
            .checked_pow(retry)
            .and_then(|f| self.initial_backoff.checked_mul(f))
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        let half = ceiling.checked_div(2).unwrap_or_default();
        let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = random_u64()
            .checked_rem(half_nanos.saturating_add(1))
            .unwrap_or(0);
        half.saturating_add(Duration::from_nanos(jitter))
    }
}

/// Whether a request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Idempotent: retry on any retryable error.
    Safe,
    /// Not idempotent: retry only if the connection could not be made.
    ConnectOnly,
}

impl Replay {
    fn allows(self, error: &Error) -> bool {
        match self {
            Self::Safe => error.is_retryable(),
            Self::ConnectOnly => matches!(
                error,
                Error::Transport {
                    kind: TransportKind::Connect,
                    ..
                }
            ),
        }
    }
}

/// A random number for jitter, without a RNG dependency: std's randomly keyed SipHash over a
/// counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Parses `Retry-After` in its delta-seconds form (the HTTP-date form is ignored and the
/// regular backoff applies).
pub(crate) fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    text.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(status: u16, retry_after: Option<Duration>) -> Error {
        Error::from_response(status, b"", retry_after)
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let cfg = RetryConfig::default()
            .with_max_retries(20)
            .with_initial_backoff(Duration::from_millis(100))
            .with_max_backoff(Duration::from_secs(1));
        for retry in 0..20 {
            let ceiling = Duration::from_millis(100)
                .checked_mul(2u32.saturating_pow(retry))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_secs(1));
            for _ in 0..20 {
                let d = cfg.backoff(retry);
                assert!(d >= ceiling / 2 && d <= ceiling, "{retry}: {d:?}");
            }
        }
    }

    #[test]
    fn retry_after_wins_and_is_capped() {
        let cfg = RetryConfig::default().with_max_retry_after(Duration::from_secs(5));
        let e = server_error(429, Some(Duration::from_secs(2)));
        assert_eq!(cfg.delay(0, &e, Replay::Safe), Some(Duration::from_secs(2)));
        let e = server_error(429, Some(Duration::from_secs(6)));
        assert_eq!(cfg.delay(0, &e, Replay::Safe), None);
    }

    #[test]
    fn policy_decides() {
        let cfg = RetryConfig::default();
        let unavailable = server_error(503, None);
        let bad_request = server_error(400, None);
        let connect = Error::transport(TransportKind::Connect, "refused");
        let timeout = Error::transport(TransportKind::Timeout, "timed out");
        assert!(cfg.delay(0, &unavailable, Replay::Safe).is_some());
        assert!(cfg.delay(0, &timeout, Replay::Safe).is_some());
        assert!(cfg.delay(0, &bad_request, Replay::Safe).is_none());
        assert!(cfg.delay(0, &unavailable, Replay::ConnectOnly).is_none());
        assert!(cfg.delay(0, &timeout, Replay::ConnectOnly).is_none());
        assert!(cfg.delay(0, &connect, Replay::ConnectOnly).is_some());
        assert!(cfg.delay(3, &connect, Replay::ConnectOnly).is_none());
        assert!(
            RetryConfig::disabled()
                .delay(0, &connect, Replay::Safe)
                .is_none()
        );
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after(b" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after(b"-1"), None);
        assert_eq!(parse_retry_after(&[0xff]), None);
    }
}

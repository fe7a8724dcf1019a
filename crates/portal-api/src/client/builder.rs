//! [`PortalBuilder`]: hosts, timeouts, retries, rate limits and size caps of a [`Portal`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::base_url;
use super::portal::{Portal, Shared};
use super::rate_limit::{RateLimit, RateLimiter};
use super::retry::RetryConfig;
use crate::error::{Error, Result};

/// Default base URL of the Client and Custodian APIs.
pub const DEFAULT_API_BASE_URL: &str = "https://api.portalhq.io";
/// Default base URL of the Enclave MPC API.
pub const DEFAULT_MPC_BASE_URL: &str = "https://mpc-client.portalhq.io";
/// Default total timeout of one HTTP attempt. MPC operations take seconds, so this is generous.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a response body.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Builds a [`Portal`]: everything about the connection, nothing about who calls (the
/// credential picks the role afterwards, see [`Portal`]).
#[must_use]
pub struct PortalBuilder {
    api_base_url: String,
    mpc_base_url: String,
    timeout: Duration,
    connect_timeout: Duration,
    retry: RetryConfig,
    api_rate_limit: Option<RateLimit>,
    mpc_rate_limit: Option<RateLimit>,
    max_response_bytes: usize,
    user_agent: String,
}

impl Default for PortalBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PortalBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortalBuilder")
            .field("api_base_url", &self.api_base_url)
            .field("mpc_base_url", &self.mpc_base_url)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry", &self.retry)
            .field("api_rate_limit", &self.api_rate_limit)
            .field("mpc_rate_limit", &self.mpc_rate_limit)
            .finish_non_exhaustive()
    }
}

impl PortalBuilder {
    /// Portal's production hosts, default timeouts, retries and rate limits.
    pub fn new() -> Self {
        Self {
            api_base_url: DEFAULT_API_BASE_URL.to_owned(),
            mpc_base_url: DEFAULT_MPC_BASE_URL.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            retry: RetryConfig::default(),
            api_rate_limit: Some(RateLimit::CLIENT_API_DEFAULT),
            mpc_rate_limit: Some(RateLimit::MPC_API_DEFAULT),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            user_agent: concat!("portal-api-rs/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// Base URL of the Client and Custodian APIs (default `https://api.portalhq.io`).
    ///
    /// Must be `https://`, or `http://` to a loopback host (`127.0.0.0/8`, `::1`,
    /// `localhost`); checked by [`build`](Self::build). A path prefix is kept.
    pub fn with_api_base_url(mut self, url: impl Into<String>) -> Self {
        self.api_base_url = url.into();
        self
    }

    /// Base URL of the Enclave MPC API (default `https://mpc-client.portalhq.io`); same rules
    /// as [`with_api_base_url`](Self::with_api_base_url).
    pub fn with_mpc_base_url(mut self, url: impl Into<String>) -> Self {
        self.mpc_base_url = url.into();
        self
    }

    /// Total timeout of one HTTP attempt (default 120 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retry policy (default: 3 retries, 250 ms initial backoff).
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Rate limit of the Client and Custodian APIs (default 200 a minute).
    pub fn with_api_rate_limit(mut self, limit: RateLimit) -> Self {
        self.api_rate_limit = Some(limit);
        self
    }

    /// Rate limit of the Enclave MPC API (default 50 a minute).
    pub fn with_mpc_rate_limit(mut self, limit: RateLimit) -> Self {
        self.mpc_rate_limit = Some(limit);
        self
    }

    /// Turns client-side rate limiting off for both hosts.
    pub fn without_rate_limits(mut self) -> Self {
        self.api_rate_limit = None;
        self.mpc_rate_limit = None;
        self
    }

    /// Largest response body accepted (default 16 MiB).
    pub fn with_max_response_bytes(mut self, max: usize) -> Self {
        self.max_response_bytes = max;
        self
    }

    /// The `User-Agent` header.
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Validates the settings and builds the transport.
    ///
    /// # Errors
    /// [`Error::InvalidBaseUrl`] for a malformed or insecure base URL,
    /// [`Error::InvalidConfig`] for an HTTP stack that cannot be set up.
    pub fn build(self) -> Result<Portal> {
        let api_base = base_url::parse("api", &self.api_base_url)?;
        let mpc_base = base_url::parse("mpc", &self.mpc_base_url)?;
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent)
            .build()
            .map_err(|_| Error::InvalidConfig {
                reason: "the HTTP client could not be initialised",
            })?;
        Ok(Portal {
            http,
            shared: Arc::new(Shared {
                api_base,
                mpc_base,
                retry: self.retry,
                max_response_bytes: self.max_response_bytes,
                api_limiter: RateLimiter::new(self.api_rate_limit),
                mpc_limiter: RateLimiter::new(self.mpc_rate_limit),
            }),
        })
    }
}

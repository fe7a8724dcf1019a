//! [`Portal`]: the transport every role shares, and the doors to the two roles.

use std::fmt;
use std::sync::Arc;

use reqwest::header::HeaderValue;
use url::Url;
use zeroize::Zeroizing;

use super::builder::PortalBuilder;
use super::client_role::{ClientApi, CredentialKind};
use super::custodian_role::CustodianApi;
use super::rate_limit::{RateLimit, RateLimiter};
use super::retry::RetryConfig;
use crate::error::{Error, Result};
use crate::secret::ApiKey;

/// The connection to Portal that every role shares: the connection pool, both base URLs, the
/// rate limiters, the retry policy and the response-size cap. It holds no credential and can
/// call nothing by itself; a credential turns it into a role:
///
/// * [`client_with_api_key`](Self::client_with_api_key) and
///   [`client_with_session_token`](Self::client_with_session_token) give a [`ClientApi`]
///   (the Enclave MPC API and the Client API: the client's own wallets and backups);
/// * [`custodian`](Self::custodian) gives a [`CustodianApi`] (the Custodian API: clients,
///   session tokens, eject windows).
///
/// Cheap to clone; clones and every role made from them share the pool and the rate limits,
/// so the limits hold across all of them.
///
/// ```
/// # #[cfg(feature = "client")] {
/// use std::time::Duration;
/// use portal_api::{ApiKey, Portal, RateLimit, RetryConfig};
///
/// let portal = Portal::builder()
///     .with_api_base_url("http://127.0.0.1:8080")
///     .with_mpc_base_url("http://127.0.0.1:8080")
///     .with_timeout(Duration::from_secs(30))
///     .with_retry(RetryConfig::default().with_max_retries(5))
///     .with_mpc_rate_limit(RateLimit::per_minute(50).with_burst(2))
///     .build()?;
/// let client = portal.client_with_api_key(&ApiKey::from("test-client-key"))?;
/// let custodian = portal.custodian(&ApiKey::from("test-custodian-key"))?;
/// assert!(!format!("{client:?} {custodian:?}").contains("test-"));
/// # }
/// # Ok::<(), portal_api::Error>(())
/// ```
#[derive(Clone)]
pub struct Portal {
    pub(super) http: reqwest::Client,
    pub(super) shared: Arc<Shared>,
}

/// State shared by all clones of a [`Portal`] and the roles made from it.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) api_base: Url,
    pub(super) mpc_base: Url,
    pub(super) retry: RetryConfig,
    pub(super) max_response_bytes: usize,
    pub(super) api_limiter: RateLimiter,
    pub(super) mpc_limiter: RateLimiter,
}

impl fmt::Debug for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Portal")
            .field("api_base_url", &self.shared.api_base.as_str())
            .field("mpc_base_url", &self.shared.mpc_base.as_str())
            .field("retry", &self.shared.retry)
            .field("api_rate_limit", &self.shared.api_limiter.limit())
            .field("mpc_rate_limit", &self.shared.mpc_limiter.limit())
            .finish_non_exhaustive()
    }
}

impl Portal {
    /// A builder with Portal's production hosts and default timeouts, retries and rate
    /// limits.
    pub fn builder() -> PortalBuilder {
        PortalBuilder::new()
    }

    /// The client role, authenticated with a Client API Key.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the key cannot be sent in a header.
    pub fn client_with_api_key(&self, key: &ApiKey) -> Result<ClientApi> {
        Ok(ClientApi::new(
            self.clone(),
            CredentialKind::ClientApiKey,
            bearer(key)?,
        ))
    }

    /// The client role, authenticated with a Client Session Token (see
    /// [`CustodianApi::client_session`] to have the custodian open one).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the token cannot be sent in a header.
    pub fn client_with_session_token(&self, token: &ApiKey) -> Result<ClientApi> {
        Ok(ClientApi::new(
            self.clone(),
            CredentialKind::ClientSessionToken,
            bearer(token)?,
        ))
    }

    /// The custodian role, authenticated with the Custodian (Portal) API Key.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the key cannot be sent in a header.
    pub fn custodian(&self, key: &ApiKey) -> Result<CustodianApi> {
        Ok(CustodianApi::new(self.clone(), bearer(key)?))
    }

    /// The configured rate limit of the Client and Custodian APIs (`None` = unlimited).
    #[must_use]
    pub fn api_rate_limit(&self) -> Option<RateLimit> {
        self.shared.api_limiter.limit()
    }

    /// The configured rate limit of the Enclave MPC API (`None` = unlimited).
    #[must_use]
    pub fn mpc_rate_limit(&self) -> Option<RateLimit> {
        self.shared.mpc_limiter.limit()
    }
}

/// `Bearer <key>` as a sensitive header value, shared by the clones of a role.
fn bearer(key: &ApiKey) -> Result<Arc<HeaderValue>> {
    let value = Zeroizing::new(format!("Bearer {}", key.expose_secret()));
    let mut header = HeaderValue::from_str(&value).map_err(|_| Error::InvalidConfig {
        reason: "the credential contains characters not allowed in an HTTP header",
    })?;
    header.set_sensitive(true);
    Ok(Arc::new(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let portal = Portal::builder().build().unwrap();
        let client = portal
            .client_with_session_token(&ApiKey::from("cst-secret-value"))
            .unwrap();
        let custodian = portal
            .custodian(&ApiKey::from("custodian-secret-value"))
            .unwrap();
        let text = format!("{portal:?} {client:?} {client:#?} {custodian:?} {custodian:#?}");
        assert!(!text.contains("secret-value"), "{text}");
        assert!(text.contains("ClientSessionToken"));
    }

    #[test]
    fn header_unsafe_credentials_are_rejected_without_echo() {
        let portal = Portal::builder().build().unwrap();
        for err in [
            portal
                .client_with_api_key(&ApiKey::from("bad\nkey-secret"))
                .unwrap_err(),
            portal
                .custodian(&ApiKey::from("bad\nkey-secret"))
                .unwrap_err(),
        ] {
            assert!(matches!(err, Error::InvalidConfig { .. }));
            assert!(!format!("{err} {err:?}").contains("key-secret"));
        }
    }

    #[test]
    fn defaults() {
        let portal = Portal::builder().build().unwrap();
        assert_eq!(portal.api_rate_limit(), Some(RateLimit::CLIENT_API_DEFAULT));
        assert_eq!(portal.mpc_rate_limit(), Some(RateLimit::MPC_API_DEFAULT));
        assert_eq!(portal.shared.api_base.as_str(), "https://api.portalhq.io/");
        assert_eq!(
            portal.shared.mpc_base.as_str(),
            "https://mpc-client.portalhq.io/"
        );
        let unlimited = Portal::builder().without_rate_limits().build().unwrap();
        assert_eq!(unlimited.api_rate_limit(), None);
    }
}

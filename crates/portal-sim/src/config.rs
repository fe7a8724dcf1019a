//! Start-time configuration of a simulator.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use portal_api::{ApiKey, BackupMethod};

use crate::faults::FaultRule;
use crate::traffic::Host;

/// Who keeps the custodian backup shares and the client backup ciphertexts.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackupMode {
    /// Portal-Managed Backups: Portal keeps the custodian backup share and, through
    /// `PATCH …/backup-share-pairs/{id}`, the client backup ciphertext
    /// (`environment.backupWithPortalEnabled = true`). Eject works.
    PortalManaged,
    /// Self-Managed Backups: every custodian backup share goes to the integrator's webhook
    /// during `/v1/backup` and comes back from it during `/v1/recover`; Portal stores no
    /// ciphertext (`backupWithPortalEnabled = false`) and has no eject.
    SelfManaged(WebhookConfig),
}

impl BackupMode {
    /// Whether Portal stores client ciphertexts in this mode.
    #[must_use]
    pub fn backup_with_portal(&self) -> bool {
        matches!(self, Self::PortalManaged)
    }
}

/// Where and how the simulator calls the Self-Managed Backup webhook.
#[non_exhaustive]
pub struct WebhookConfig {
    /// The base URL: the simulator calls `{base_url}/backup` and `{base_url}/backup/fetch`.
    pub base_url: String,
    /// Sent as `X-Webhook-Secret` on every call.
    pub secret: ApiKey,
    /// Deadline of each webhook call; Portal's is 10 s.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// A webhook at `base_url` with `secret` and Portal's 10 s deadline.
    #[must_use]
    pub fn new(base_url: impl Into<String>, secret: ApiKey) -> Self {
        Self {
            base_url: base_url.into(),
            secret,
            timeout: Duration::from_secs(10),
        }
    }

    /// Changes the deadline of each call.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// How share-pair statuses show in `/clients/me` and the wallet listings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatusView {
    /// `completed` / `incomplete`, as Portal's docs show (default).
    #[default]
    Summary,
    /// The raw lifecycle states (`STORED_CLIENT`, `STORED_CLIENT_BACKUP_SHARE_KEY`, ...), as some
    /// sources show; lets a client prove it copes with both.
    Raw,
}

/// Configuration of a simulator. Start from [`SimConfig::new`] (Portal-managed, loopback on an
/// ephemeral port, random seed, no faults).
///
/// ```
/// use std::time::Duration;
/// use portal_sim::{FaultRule, RouteSelector, SimConfig};
///
/// let config = SimConfig::new()
///     .with_seed(7)
///     .with_fault(FaultRule::new(RouteSelector::method("GET")).with_error(0.2, 503));
/// assert_eq!(config.seed, Some(7));
/// ```
#[non_exhaustive]
pub struct SimConfig {
    /// Backup mode: Portal-managed or Self-Managed with a webhook.
    pub mode: BackupMode,
    /// Listen address of [`PortalSim::start`](crate::PortalSim::start); default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Seed of every random draw (ids, keys, shares, faults); `None` = from the OS.
    pub seed: Option<u64>,
    /// Fault rules active from the start.
    pub faults: Vec<FaultRule>,
    /// The `backupMethod` of backup pairs made by `/v1/backup` (default `CUSTOM`). Webhooks see
    /// it per curve, e.g. `CUSTOM-SECP256K1`.
    pub backup_method: BackupMethod,
    /// How statuses show in `/clients/me`.
    pub status_view: StatusView,
    /// A fixed API key for the default custodian (handy for the binary); random when `None`.
    pub custodian_api_key: Option<ApiKey>,
    /// Requests each host accepts within any one second before it answers 429 (`None` = no
    /// limit, the default). See [`with_rate_limit`](Self::with_rate_limit).
    pub rate_limit_api: Option<u32>,
    /// The same for the Enclave MPC API (`/v1/…`).
    pub rate_limit_mpc: Option<u32>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("mode", &self.mode)
            .field("listen", &self.listen)
            .field("seed", &self.seed)
            .field("faults", &self.faults)
            .field("backup_method", &self.backup_method)
            .field("status_view", &self.status_view)
            .field("custodian_api_key", &self.custodian_api_key.is_some())
            .field("rate_limit_api", &self.rate_limit_api)
            .field("rate_limit_mpc", &self.rate_limit_mpc)
            .finish()
    }
}

impl SimConfig {
    /// Portal-managed, `127.0.0.1:0`, random seed, no faults, `CUSTOM` backups, summary
    /// statuses.
    #[must_use]
    pub fn new() -> Self {
        Self {
            mode: BackupMode::PortalManaged,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            seed: None,
            faults: Vec::new(),
            backup_method: BackupMethod::Custom,
            status_view: StatusView::Summary,
            custodian_api_key: None,
            rate_limit_api: None,
            rate_limit_mpc: None,
        }
    }

    /// Sets the backup mode.
    #[must_use]
    pub fn with_mode(mut self, mode: BackupMode) -> Self {
        self.mode = mode;
        self
    }

    /// Self-Managed mode with this webhook.
    #[must_use]
    pub fn with_webhook(self, webhook: WebhookConfig) -> Self {
        self.with_mode(BackupMode::SelfManaged(webhook))
    }

    /// Sets the listen address.
    #[must_use]
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Makes every random draw reproducible.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Adds a fault rule.
    #[must_use]
    pub fn with_fault(mut self, rule: FaultRule) -> Self {
        self.faults.push(rule);
        self
    }

    /// Sets the backup method of new backup pairs.
    #[must_use]
    pub fn with_backup_method(mut self, method: BackupMethod) -> Self {
        self.backup_method = method;
        self
    }

    /// Sets how statuses show.
    #[must_use]
    pub fn with_status_view(mut self, view: StatusView) -> Self {
        self.status_view = view;
        self
    }

    /// Limits `host` to `per_second` requests within any one second (a sliding window over
    /// arrivals): a request beyond that is answered 429 `TOO_MANY_REQUESTS` with
    /// `Retry-After: 1`, as Portal answers a client over its limit, and counted in
    /// [`HostTraffic::throttled`](crate::HostTraffic::throttled). Refused requests count
    /// towards the window too. Values of 0 are raised to 1.
    ///
    /// ```
    /// use portal_sim::{Host, SimConfig};
    ///
    /// let config = SimConfig::new().with_rate_limit(Host::Mpc, 5);
    /// assert_eq!(config.rate_limit_mpc, Some(5));
    /// ```
    #[must_use]
    pub fn with_rate_limit(mut self, host: Host, per_second: u32) -> Self {
        let limit = Some(per_second.max(1));
        match host {
            Host::Api => self.rate_limit_api = limit,
            Host::Mpc => self.rate_limit_mpc = limit,
        }
        self
    }

    /// The rate limit of `host`, if any.
    #[must_use]
    pub fn rate_limit(&self, host: Host) -> Option<u32> {
        match host {
            Host::Api => self.rate_limit_api,
            Host::Mpc => self.rate_limit_mpc,
        }
    }

    /// Fixes the default custodian's API key.
    #[must_use]
    pub fn with_custodian_api_key(mut self, key: ApiKey) -> Self {
        self.custodian_api_key = Some(key);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let config = SimConfig::new()
            .with_custodian_api_key(ApiKey::from("custodian-secret-1"))
            .with_webhook(WebhookConfig::new(
                "http://127.0.0.1:9/hook",
                ApiKey::from("webhook-secret-2"),
            ));
        for text in [format!("{config:?}"), format!("{config:#?}")] {
            assert!(!text.contains("custodian-secret-1"), "{text}");
            assert!(!text.contains("webhook-secret-2"), "{text}");
            assert!(text.contains("127.0.0.1:9/hook"), "{text}");
        }
    }
}

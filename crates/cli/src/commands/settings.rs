//! [`Settings`]: the global options, and the Portal roles, stores and flow made from them.

use std::path::PathBuf;
use std::sync::Arc;

use backup_flow::{Flow, StoreFactory};
use envelope::Keyring;
use portal_api::{ApiKey, ClientApi, CustodianApi, Portal, RateLimit};

use crate::args::{Global, RateLimitArg};
use crate::failure::Failure;
use crate::kms;
use crate::store::StoreUri;

/// The global options, with the credentials moved into secret types at once.
pub(crate) struct Settings {
    pub(super) api_key: Option<ApiKey>,
    pub(super) custodian_api_key: Option<ApiKey>,
    pub(super) api_url: String,
    pub(super) mpc_url: String,
    pub(super) kms: Vec<String>,
    pub(super) store: String,
    pub(super) state_dir: Option<PathBuf>,
}

fn secret(value: Option<String>) -> Option<ApiKey> {
    value.filter(|v| !v.is_empty()).map(ApiKey::new)
}

impl Settings {
    pub(crate) fn new(global: Global) -> Self {
        Self {
            api_key: secret(global.api_key),
            custodian_api_key: secret(global.custodian_api_key),
            api_url: global.portal_api_url,
            mpc_url: global.portal_mpc_url,
            kms: global
                .kms
                .into_iter()
                .filter(|k| !k.trim().is_empty())
                .collect(),
            store: global.store,
            state_dir: global.state_dir,
        }
    }

    /// The connection to Portal, with no credential.
    pub(super) fn transport(&self, rate: Option<RateLimitArg>) -> Result<Portal, Failure> {
        let mut builder = Portal::builder()
            .with_api_base_url(&self.api_url)
            .with_mpc_base_url(&self.mpc_url)
            .with_user_agent(concat!("portal-backup/", env!("CARGO_PKG_VERSION")));
        match rate {
            None => {}
            Some(RateLimitArg::Off) => builder = builder.without_rate_limits(),
            Some(RateLimitArg::PerMinute(n)) => {
                let limit = RateLimit::per_minute(n).with_burst((n / 60).clamp(1, 10));
                builder = builder
                    .with_api_rate_limit(limit)
                    .with_mpc_rate_limit(limit);
            }
        }
        builder
            .build()
            .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))
    }

    /// The client of `--api-key`.
    pub(super) fn client(&self) -> Result<ClientApi, Failure> {
        let key = self.api_key.as_ref().ok_or_else(|| {
            Failure::new("no Client API Key given")
                .hint("set PORTAL_CLIENT_API_KEY (or pass --api-key)")
        })?;
        self.transport(None)?
            .client_with_api_key(key)
            .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))
    }

    /// The custodian of `--custodian-api-key`.
    pub(super) fn custodian(&self) -> Result<CustodianApi, Failure> {
        let key = self.custodian_api_key.as_ref().ok_or_else(|| {
            Failure::new("no Custodian API Key given")
                .hint("set PORTAL_CUSTODIAN_API_KEY (or pass --custodian-api-key)")
        })?;
        self.transport(None)?
            .custodian(key)
            .map_err(|e| Failure::caused_by("cannot set up the Portal client", e))
    }

    pub(super) fn state_dir(&self) -> Result<PathBuf, Failure> {
        if let Some(dir) = &self.state_dir {
            return Ok(dir.clone());
        }
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        if let Some(state) = var("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
            return Ok(state.join("portal-backup"));
        }
        if let Some(home) = var("HOME") {
            return Ok(home.join(".local/state/portal-backup"));
        }
        Err(Failure::new("no state directory")
            .hint("set PORTAL_BACKUP_STATE_DIR (or pass --state-dir)"))
    }

    pub(super) async fn store(&self) -> Result<(StoreUri, Arc<dyn StoreFactory>), Failure> {
        let uri = crate::store::parse(&self.store)?;
        let stores = crate::store::open(&uri).await?;
        Ok((uri, stores))
    }

    pub(super) async fn flow(&self) -> Result<Flow, Failure> {
        let keyring = kms::keyring(&self.kms, "--kms").await?;
        let (_, stores) = self.store().await?;
        self.flow_with(keyring, stores)
    }

    pub(super) fn flow_with(
        &self,
        keyring: Keyring,
        stores: Arc<dyn StoreFactory>,
    ) -> Result<Flow, Failure> {
        let state = self.state_dir()?;
        Flow::new(keyring, stores, &state).map_err(|e| {
            Failure::flow(
                format!("cannot use the state directory {}", state.display()),
                e,
            )
        })
    }
}

//! Shared helpers of the portal-sim integration tests.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances, and not
// every test binary uses every helper.
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::time::Duration;

use base64::Engine as _;
use portal_api::client::RetryConfig;
use portal_api::client_api::SharePairStatusUpdate;
use portal_api::mpc::{BackupResponse, GenerateResponse};
use portal_api::{ApiKey, Client, ClientBuilder, SharePairUpdateStatus};
use portal_sim::{PortalSim, SimClient, SimConfig};

/// Retries fast and often, so injected faults are absorbed quickly.
pub(crate) fn fast_retry() -> RetryConfig {
    RetryConfig::default()
        .with_max_retries(10)
        .with_initial_backoff(Duration::from_millis(2))
        .with_max_backoff(Duration::from_millis(20))
}

pub(crate) fn copy_key(key: &ApiKey) -> ApiKey {
    ApiKey::from(key.expose_secret())
}

/// A portal-api client for `keys` against `sim` (both hosts on the simulator).
pub(crate) fn client_for(sim: &PortalSim, keys: &SimClient) -> Client {
    ClientBuilder::new()
        .with_api_base_url(sim.api_base_url())
        .with_mpc_base_url(sim.mpc_base_url())
        .with_client_api_key(copy_key(&keys.client_api_key))
        .with_custodian_api_key(copy_key(&keys.custodian_api_key))
        .with_retry(fast_retry())
        .without_rate_limits()
        .build()
        .unwrap()
}

/// A client with only a (possibly wrong) client key.
pub(crate) fn client_with_key(sim: &PortalSim, key: &str) -> Client {
    ClientBuilder::new()
        .with_api_base_url(sim.api_base_url())
        .with_mpc_base_url(sim.mpc_base_url())
        .with_client_api_key(ApiKey::from(key))
        .with_custodian_api_key(ApiKey::from(key))
        .with_retry(RetryConfig::disabled())
        .without_rate_limits()
        .build()
        .unwrap()
}

pub(crate) async fn start(config: SimConfig) -> PortalSim {
    PortalSim::start(config).await.unwrap()
}

/// generate + confirm STORED_CLIENT.
pub(crate) async fn wallet(client: &Client) -> GenerateResponse {
    let generated = client.generate().await.unwrap();
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generated.ids()))
        .await
        .unwrap();
    generated
}

/// backup + store each ciphertext + mark STORED_CLIENT_BACKUP_SHARE (the DESIGN.md order).
pub(crate) async fn backed_up(client: &Client, generated: &GenerateResponse) -> BackupResponse {
    let backup = client.backup(generated).await.unwrap();
    for (curve, share) in backup.iter() {
        client
            .store_cipher_text(&share.id, &format!("ciphertext-of-{curve}-{}", share.id))
            .await
            .unwrap();
    }
    client
        .update_backup_share_pairs(&SharePairStatusUpdate::backup(
            backup.ids(),
            SharePairUpdateStatus::StoredClientBackupShare,
        ))
        .await
        .unwrap();
    backup
}

/// Decodes a share (unpadded standard base64) into its JSON object.
pub(crate) fn decode_share(share: &str) -> serde_json::Value {
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(share)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A plain HTTP client for admin routes and hand-made requests.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::new()
}

//! Shared helpers of the portal-sim integration tests.
// Helpers outside #[test] functions are not covered by clippy.toml's test allowances, and not
// every test binary uses every helper.
#![allow(clippy::unwrap_used, reason = "test helpers panic on broken fixtures")]
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::time::Duration;

use base64::Engine as _;
use portal_api::RetryConfig;
use portal_api::client_api::SharePairStatusUpdate;
use portal_api::custodian_api::{EnableEjectRequest, EnableEjectResponse};
use portal_api::mpc::{BackupResponse, GenerateResponse};
use portal_api::{ApiKey, ClientApi, CustodianApi, SharePairUpdateStatus, paths};
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

/// Both Portal roles of one simulated client over one transport: the client's own (the
/// `Deref` target, for the MPC and Client API routes) and its custodian's.
#[derive(Clone, Debug)]
pub(crate) struct Both {
    pub(crate) client: ClientApi,
    pub(crate) custodian: CustodianApi,
}

impl std::ops::Deref for Both {
    type Target = ClientApi;

    fn deref(&self) -> &ClientApi {
        &self.client
    }
}

/// Both roles of `keys` against `sim` (both hosts on the simulator).
pub(crate) fn client_for(sim: &PortalSim, keys: &SimClient) -> Both {
    let portal = sim
        .portal_builder()
        .with_retry(fast_retry())
        .build()
        .unwrap();
    Both {
        client: portal.client_with_api_key(&keys.client_api_key).unwrap(),
        custodian: portal.custodian(&keys.custodian_api_key).unwrap(),
    }
}

/// Both roles with one (possibly wrong) key.
pub(crate) fn client_with_key(sim: &PortalSim, key: &str) -> Both {
    let portal = sim
        .portal_builder()
        .with_retry(RetryConfig::disabled())
        .build()
        .unwrap();
    Both {
        client: portal.client_with_api_key(&ApiKey::from(key)).unwrap(),
        custodian: portal.custodian(&ApiKey::from(key)).unwrap(),
    }
}

pub(crate) async fn start(config: SimConfig) -> PortalSim {
    PortalSim::start(config).await.unwrap()
}

/// A simulator, a client of its default custodian, and a portal-api client with every key.
pub(crate) async fn start_with_client(config: SimConfig) -> (PortalSim, SimClient, Both) {
    let sim = start(config).await;
    let keys = sim.create_client();
    let client = client_for(&sim, &keys);
    (sim, keys, client)
}

/// generate + confirm STORED_CLIENT.
pub(crate) async fn wallet(client: &ClientApi) -> GenerateResponse {
    let generated = client.generate().await.unwrap();
    client
        .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(generated.ids()))
        .await
        .unwrap();
    generated
}

/// backup + store each ciphertext + mark STORED_CLIENT_BACKUP_SHARE (the DESIGN.md order).
pub(crate) async fn backed_up(client: &ClientApi, generated: &GenerateResponse) -> BackupResponse {
    let backup = client.backup(generated).await.unwrap();
    for (curve, share) in backup.iter() {
        client
            .store_cipher_text(&share.id, &format!("ciphertext-of-{curve}-{}", share.id))
            .await
            .unwrap();
    }
    complete_backup(client, &backup).await.unwrap();
    backup
}

/// Marks every pair of `backup` `STORED_CLIENT_BACKUP_SHARE` (completed).
pub(crate) async fn complete_backup(
    client: &ClientApi,
    backup: &BackupResponse,
) -> Result<(), portal_api::Error> {
    mark_backup(
        client,
        backup,
        SharePairUpdateStatus::StoredClientBackupShare,
    )
    .await
}

/// `PATCH …/backup-share-pairs`: every pair of `backup` to `status`.
pub(crate) async fn mark_backup(
    client: &ClientApi,
    backup: &BackupResponse,
    status: SharePairUpdateStatus,
) -> Result<(), portal_api::Error> {
    client
        .update_backup_share_pairs(&SharePairStatusUpdate::backup(backup.ids(), status))
        .await
}

/// The `message` of the error body Portal answered.
pub(crate) fn error_message(err: &portal_api::Error) -> &str {
    err.body().unwrap().message.as_deref().unwrap()
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

/// `GET /clients/me` by hand, with `key` as the bearer token.
pub(crate) async fn raw_client_me(
    sim: &PortalSim,
    key: &ApiKey,
) -> reqwest::Result<reqwest::Response> {
    http()
        .get(format!("{}{}", sim.base_url(), paths::CLIENT_ME))
        .bearer_auth(key.expose_secret())
        .send()
        .await
}

/// Sends a hand-made request and reads its JSON answer.
pub(crate) async fn send_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// Sends a hand-made request and reads its text answer.
pub(crate) async fn send_text(request: reqwest::RequestBuilder) -> String {
    request.send().await.unwrap().text().await.unwrap()
}

/// The custodian opens an eject window for `wallet_id` (Portal's default length when `until`
/// is `None`).
pub(crate) async fn enable_eject(
    client: &Both,
    client_id: &str,
    wallet_id: &str,
    until: Option<&str>,
) -> Result<EnableEjectResponse, portal_api::Error> {
    let request = EnableEjectRequest {
        wallet_id: wallet_id.to_owned(),
        ejectable_until: until.map(str::to_owned),
    };
    client.custodian.enable_eject(client_id, &request).await
}

/// Checks Portal's answer to a missing or malformed `Authorization` header: 401 with a bare
/// JSON string.
pub(crate) async fn assert_bare_401(response: reqwest::Response, message: &str) {
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!(message)
    );
}

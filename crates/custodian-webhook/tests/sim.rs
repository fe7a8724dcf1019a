//! portal-sim in Self-Managed mode backs clients up through this server (on a file store) and
//! recovers them; its invariant report stays clean and no plaintext share reaches the disk.

mod support;

use std::sync::Arc;

use custodian_webhook::storage::fs::FsStore;
use portal_api::RetryConfig;
use portal_api::client_api::SharePairStatusUpdate;
use portal_api::{ApiKey, ClientApi, SharePairUpdateStatus};
use portal_sim::{BackupMode, PortalSim, SimConfig, WebhookConfig};
use support::{SECRET, builder, fetch, http, scan, start};

// A helper outside #[test]: a broken fixture should panic.
#[allow(clippy::unwrap_used, reason = "test helper")]
fn client_for(sim: &PortalSim, key: &ApiKey) -> ClientApi {
    sim.portal_builder()
        .with_retry(
            RetryConfig::default()
                .with_initial_backoff(std::time::Duration::from_millis(5))
                .with_max_backoff(std::time::Duration::from_millis(20)),
        )
        .build()
        .unwrap()
        .client_with_api_key(&ApiKey::from(key.expose_secret()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_sim_backs_up_and_recovers_through_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FsStore::new(dir.path().join("custodian")).unwrap());
    let running = start(builder(store).with_base_path("/portal").build().unwrap()).await;
    let base = running.url("/portal");
    let sim = PortalSim::start(
        SimConfig::new()
            .with_seed(11)
            .with_mode(BackupMode::SelfManaged(WebhookConfig::new(
                &base,
                ApiKey::from(SECRET),
            ))),
    )
    .await
    .unwrap();

    let http = http();
    let mut all_shares = Vec::new();
    for _ in 0..3 {
        let (keys, generated) = sim.generated_client().await.unwrap();
        let client = client_for(&sim, &keys.client_api_key);

        // /v1/backup: the sim posts each curve's custodian share to our /backup and checks
        // that /backup/fetch returns it.
        let backup = client.backup(&generated).await.unwrap();
        assert_eq!(backup.ids().len(), 2);
        client
            .update_backup_share_pairs(&SharePairStatusUpdate::backup(
                backup.ids(),
                SharePairUpdateStatus::StoredClientBackupShare,
            ))
            .await
            .unwrap();

        let shares = fetch(&http, &base, &keys.client_id).await;
        assert_eq!(shares.len(), 2, "one share per curve method");
        all_shares.extend(shares);

        // /v1/recover: the sim fetches the shares back from us.
        let recovered = client.recover(&backup).await.unwrap();
        assert_eq!(recovered.ids().len(), 2);

        // A second backup replaces the shares of the same methods.
        client
            .update_signing_share_pairs(&SharePairStatusUpdate::signing_stored(recovered.ids()))
            .await
            .unwrap();
        client.backup(&recovered).await.unwrap();
        let again = fetch(&http, &base, &keys.client_id).await;
        assert_eq!(again.len(), 2);
        all_shares.extend(again);
    }

    let report = sim.report();
    assert!(report.is_clean(), "{report}");
    running.stop().await;
    sim.shutdown().await.unwrap();

    scan::self_check();
    let hits = scan::scan(dir.path(), &all_shares);
    assert!(hits.is_empty(), "plaintext on disk: {hits:?}");
}

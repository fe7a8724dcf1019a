//! Rotation against the real services' aliasing: an AWS alias repointed from K1 to K2 (moto),
//! and a Cloud KMS key whose primary version moved (the in-repo REST fake). In both, `rotate`
//! to the alias (or the unpinned key) must move every ciphertext to the key it points to now:
//! afterwards a KEK pinned to the new key alone opens everything and one pinned to the old
//! key opens nothing.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failure

#[path = "../../crates/envelope/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use backup_flow::envelope::aws::AwsKmsBuilder;
use backup_flow::envelope::gcp::GcpKmsBuilder;
use backup_flow::envelope::{KeyEncryptionKey, Keyring};
use backup_flow::portal_api::ApiKey;
use backup_flow::portal_api::RetryConfig;
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::{BackupStore, ShareKind};
use backup_flow::{Finding, Flow};
use custodian_webhook::{WebhookSecrets, WebhookServer};
use portal_sim::{BackupMode, PortalSim, SimConfig, WebhookConfig};
use support::gcp_fake::{self, GcpFake};
use support::moto;

const SECRET: &str = "rotation-webhook-secret";

fn ring(kek: impl KeyEncryptionKey) -> Keyring {
    Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>)
}

/// A Self-Managed client backed up under `keyring` into a file store (its custodian shares
/// through the real webhook, sealed under the same keyring into the same store). Returns the
/// simulator, the client id, the flow and the directories it uses.
struct BackedUp {
    sim: PortalSim,
    client_id: String,
    flow: Flow,
    store: Arc<dyn BackupStore>,
    _state: tempfile::TempDir,
    _data: tempfile::TempDir,
}

async fn backed_up(keyring: Keyring) -> BackedUp {
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let fs = Arc::new(FsStore::new(data.path()).unwrap());
    let webhook = WebhookServer::builder()
        .with_keyring(keyring.clone())
        .with_store(Arc::clone(&fs) as Arc<dyn BackupStore>)
        .with_secrets(WebhookSecrets::parse(SECRET).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { webhook.serve(listener, std::future::pending::<()>()).await });
    let sim = PortalSim::start(
        SimConfig::new()
            .with_seed(5)
            .with_mode(BackupMode::SelfManaged(WebhookConfig::new(
                url,
                ApiKey::from(SECRET),
            ))),
    )
    .await
    .unwrap();
    let (keys, generate) = sim.generated_client().await.unwrap();
    let client = sim
        .portal_builder()
        .with_retry(
            RetryConfig::default().with_initial_backoff(std::time::Duration::from_millis(5)),
        )
        .build()
        .unwrap()
        .client_with_api_key(&keys.client_api_key)
        .unwrap();
    let store: Arc<dyn BackupStore> = fs;
    let flow = Flow::new(keyring, Arc::clone(&store), state.path()).unwrap();
    assert_eq!(
        flow.session(client).backup(&generate).await.unwrap().status,
        "confirmed"
    );
    BackedUp {
        sim,
        client_id: keys.client_id.clone(),
        flow,
        store,
        _state: state,
        _data: data,
    }
}

impl BackedUp {
    /// Rotates to `to`, then checks that `new` alone opens every client share and that `old`
    /// opens none.
    async fn rotate_and_check(&self, to: Keyring, new: Keyring, old: Keyring) {
        let objects = self.store.list(&self.client_id).await.unwrap();
        let custodian = objects
            .iter()
            .filter(|k| k.kind() == ShareKind::CustodianBackup)
            .count();
        assert!(
            custodian >= 1,
            "the webhook stored custodian shares: {objects:?}"
        );
        let clients = [self.client_id.clone()];
        let report = self.flow.rotate(&to, &clients).await.unwrap();
        assert_eq!(report.rewrapped, objects.len(), "{report:?}");
        assert_eq!(report.already_current, 0, "{report:?}");
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(report.not_under_target, 0);

        let state = tempfile::tempdir().unwrap();
        // The drill is store-only: no Portal role.
        let with =
            |keyring: Keyring| Flow::new(keyring, Arc::clone(&self.store), state.path()).unwrap();
        let report = with(new).verify_stored(&self.client_id).await.unwrap();
        assert!(
            report.is_ok(),
            "the new key alone opens everything: {report:?}"
        );
        let report = with(old).verify_stored(&self.client_id).await.unwrap();
        assert_eq!(report.checked.len(), 2);
        assert!(
            report
                .checked
                .iter()
                .all(|c| matches!(c.finding, Finding::WrongIdentity { .. })),
            "the old key opens nothing: {report:?}"
        );
        let sim_report = self.sim.report();
        assert!(sim_report.is_clean(), "{sim_report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_to_an_aws_alias_moves_everything_to_the_key_it_points_to_now() {
    let Some(server) = moto::shared() else { return };
    let client = moto::client(&server.endpoint, &moto::RequestCounter::default());
    let (k1, k2) = (
        moto::create_key(&client).await,
        moto::create_key(&client).await,
    );
    let alias = format!("alias/rotation-{}", test_services::random_hex());
    client
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&k1)
        .send()
        .await
        .unwrap();
    let pinned = |arn: &str| {
        AwsKmsBuilder::new()
            .with_key_id(arn)
            .with_client(client.clone())
    };
    let backed = backed_up(ring(pinned(&k1).build().await.unwrap())).await;

    client
        .update_alias()
        .alias_name(&alias)
        .target_key_id(&k2)
        .send()
        .await
        .unwrap();
    let to_alias = ring(pinned(&alias).build().await.unwrap());
    assert_eq!(
        to_alias.current_key_refs().await.unwrap()[0].key_id(),
        k2,
        "the alias resolves to the key it points to now"
    );
    backed
        .rotate_and_check(
            to_alias,
            ring(pinned(&k2).build().await.unwrap()),
            ring(pinned(&k1).build().await.unwrap()),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_to_a_cloud_kms_key_moves_everything_to_its_new_primary_version() {
    let mut fake = GcpFake::start().await;
    let endpoint = fake.endpoint.clone();
    let kek = |name: String| {
        let endpoint = endpoint.clone();
        async move {
            GcpKmsBuilder::new()
                .with_key_name(name)
                .with_client(gcp_fake::client(&endpoint).await)
                .build()
                .await
                .unwrap()
        }
    };
    let version = |n: usize| format!("{}/cryptoKeyVersions/{n}", gcp_fake::KEY);
    let backed = backed_up(ring(kek(gcp_fake::KEY.to_owned()).await)).await;

    assert_eq!(fake.rotate(gcp_fake::KEY), 2, "version 2 is primary now");
    let unpinned = ring(kek(gcp_fake::KEY.to_owned()).await);
    assert_eq!(
        unpinned.current_key_refs().await.unwrap()[0].key_id(),
        version(2)
    );
    backed
        .rotate_and_check(
            unpinned,
            ring(kek(version(2)).await),
            ring(kek(version(1)).await),
        )
        .await;
}

//! Backup, verify and recover end to end against `portal-sim`, Portal-managed and
//! self-stored, with each KMS backend of the workspace as the only key-encryption key: AWS KMS
//! (moto), Google Cloud KMS (the in-repo REST fake) and PKCS#11 (SoftHSM2, a fresh token).
//! The simulator's invariant report must be clean after each.
#![allow(clippy::unwrap_used)] // tests and their fixtures: a panic is a failure

#[path = "../../crates/envelope/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use backup_flow::envelope::aws::AwsKmsBuilder;
use backup_flow::envelope::gcp::GcpKmsBuilder;
use backup_flow::envelope::testing::{CallCounter, HookedKek};
use backup_flow::envelope::{KeyEncryptionKey, Keyring};
use backup_flow::portal_api::RetryConfig;
use backup_flow::portal_api::{ApiKey, Curve};
use backup_flow::storage::BackupStore;
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::memory::MemoryStore;
use backup_flow::{Flow, PortalManaged, StoreFactory};
use custodian_webhook::{WebhookSecrets, WebhookServer};
use portal_sim::{BackupMode, PortalSim, SimConfig, WebhookConfig};
use support::gcp_fake::{self, GcpFake};
use support::{hsm, moto};

const SECRET: &str = "integration-webhook-secret";

/// KEK calls made by the flow (not the webhook) in each step of a cycle, for one storage mode.
#[derive(Debug, PartialEq, Eq)]
struct RoundTrips {
    backup: usize,
    verify: usize,
    recover: usize,
}

/// What every backend must cost: a backup draws one data key for both shares (one call) and
/// its restore drill unwraps it once, through the KMS, to prove the stored ciphertexts open;
/// the drill alone and a recovery each unwrap once for both shares.
const EXPECTED: RoundTrips = RoundTrips {
    backup: 2,
    verify: 1,
    recover: 1,
};

/// One full cycle with `kek` as the only KEK: Portal-managed backup, verify, recover; then a
/// self-stored backup (files, custodian shares through the real webhook), verify, recover.
/// The webhook seals with `webhook_kek` (default: `kek`). Returns the KEK calls the flow made
/// in each step, Portal-managed first.
async fn cycle(
    kek: Arc<dyn KeyEncryptionKey>,
    webhook_kek: Option<Arc<dyn KeyEncryptionKey>>,
) -> [RoundTrips; 2] {
    let provider = kek.provider().to_owned();
    let keyring = Keyring::new().with(webhook_kek.unwrap_or_else(|| Arc::clone(&kek)));
    // Each call counted is one request to the KMS (AWS, Google Cloud) or one operation on the
    // token (PKCS#11).
    let calls = Arc::new(CallCounter::default());
    let counted = Keyring::new().with(Arc::new(HookedKek::new(kek).with_hook(Arc::clone(&calls))));
    let mut counts = Vec::new();
    for self_managed in [false, true] {
        let mut config = SimConfig::new().with_seed(11);
        if self_managed {
            config = config.with_mode(BackupMode::SelfManaged(WebhookConfig::new(
                webhook(keyring.clone()).await,
                ApiKey::from(SECRET),
            )));
        }
        let sim = PortalSim::start(config).await.unwrap();
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
        let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let target: Arc<dyn StoreFactory> = if self_managed {
            Arc::new(Arc::new(FsStore::new(data.path()).unwrap()) as Arc<dyn BackupStore>)
        } else {
            Arc::new(PortalManaged)
        };
        let flow = Flow::new(counted.clone(), target, state.path())
            .unwrap()
            .session(client);
        let taken = || {
            let taken = calls.total();
            calls.reset();
            taken
        };
        taken();

        let outcome = flow.backup(&generate).await.unwrap();
        assert_eq!(outcome.status, "confirmed", "{provider}");
        let backup = taken();
        let report = flow.verify().await.unwrap();
        assert!(report.is_ok(), "{provider}: {report:?}");
        let verify = taken();
        let recovered = flow.recover().await.unwrap();
        let recover = taken();
        assert!(
            recovered.shares.get(&Curve::Secp256k1).is_some(),
            "{provider}"
        );
        assert!(
            recovered.shares.get(&Curve::Ed25519).is_some(),
            "{provider}"
        );
        let sim_report = sim.report();
        assert!(
            sim_report.is_clean(),
            "{provider}, self-managed {self_managed}: {sim_report}"
        );
        let steps = RoundTrips {
            backup,
            verify,
            recover,
        };
        eprintln!(
            "KEK calls, {provider}, {}: backup {backup}, verify {verify}, recover {recover}",
            if self_managed {
                "self-stored"
            } else {
                "Portal-managed"
            }
        );
        assert_eq!(steps, EXPECTED, "{provider}, self-managed {self_managed}");
        counts.push(steps);
    }
    counts.try_into().unwrap()
}

/// The custodian webhook, sealing the custodian shares with the same keyring.
async fn webhook(keyring: Keyring) -> String {
    let server = WebhookServer::builder()
        .with_keyring(keyring)
        .with_store(Arc::new(MemoryStore::new()))
        .with_secrets(WebhookSecrets::parse(SECRET).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { server.serve(listener, std::future::pending::<()>()).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_kms_against_moto() {
    let Some(server) = moto::shared() else { return };
    let counter = moto::RequestCounter::default();
    let client = moto::client(&server.endpoint, &counter);
    let arn = moto::create_key(&client).await;
    let aws = AwsKmsBuilder::new()
        .with_key_id(arn.clone())
        .with_client(client)
        .build()
        .await
        .unwrap();
    // The webhook gets a client of its own, so that `counter` sees the flow's requests only.
    let webhook_client = moto::client(&server.endpoint, &moto::RequestCounter::default());
    let webhook_aws = AwsKmsBuilder::new()
        .with_key_id(arn)
        .with_client(webhook_client)
        .build()
        .await
        .unwrap();
    counter.take();
    cycle(Arc::new(aws), Some(Arc::new(webhook_aws))).await;
    // Every KEK call was exactly one KMS request: per mode one GenerateDataKey (the backup)
    // and three Decrypts (the backup's drill, verify, recover), nothing else.
    assert_eq!(counter.take(), (2, 0, 6, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcp_kms_against_the_rest_fake() {
    let fake = GcpFake::start().await;
    let gcp = GcpKmsBuilder::new()
        .with_key_name(gcp_fake::KEY)
        .with_client(gcp_fake::client(&fake.endpoint).await)
        .build()
        .await
        .unwrap();
    cycle(Arc::new(gcp), None).await;
}

#[test]
fn pkcs11_in_a_fresh_softhsm2_token() {
    if hsm::inside() {
        return;
    }
    hsm::run_in_fresh_token("in_token::", 1, &[]);
}

mod in_token {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pkcs11_cycle() {
        let Some(kek) = hsm::kek() else { return };
        cycle(Arc::new(kek), None).await;
    }
}

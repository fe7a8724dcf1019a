//! Test support: a simulator, a client set up as an app would leave it, and the custodian
//! webhook for Self-Managed Backups, so that self-stored runs keep the simulator's report clean.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::indexing_slicing
)] // test helpers shared by several test binaries; a broken fixture should panic

pub mod backups;

use std::path::Path;
use std::sync::Arc;

use backup_flow::envelope::{KeyEncryptionKey, Keyring, local::LocalKek};
use backup_flow::portal_api::RetryConfig;
use backup_flow::portal_api::mpc::GenerateResponse;
use backup_flow::portal_api::{ApiKey, ClientApi, CustodianApi, Portal};
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{
    BackupKey, BackupStore, Capabilities, ObjectVersion, PutOptions, StorageError,
};
use backup_flow::{ClientFlow, CustodianFlow, Flow, PortalManaged, StoreFactory};
use bytes::Bytes;
use custodian_webhook::{WebhookSecrets, WebhookServer};
use portal_sim::{BackupMode, PortalSim, SimClient, SimConfig, WebhookConfig};

pub const WEBHOOK_SECRET: &str = "test-webhook-secret";

pub fn keyring() -> Keyring {
    Keyring::new().with(Arc::new(LocalKek::generate().unwrap()) as Arc<dyn KeyEncryptionKey>)
}

/// A started simulator; in self-managed mode with a minimal in-test webhook.
pub async fn sim(self_managed: bool) -> PortalSim {
    if self_managed {
        self_managed_sim(Arc::new(MemoryStore::new())).await
    } else {
        PortalSim::start(SimConfig::new().with_seed(7))
            .await
            .unwrap()
    }
}

/// A started simulator in self-managed mode whose webhook keeps the custodian shares in
/// `webhook_store`.
pub async fn self_managed_sim(webhook_store: Arc<dyn BackupStore>) -> PortalSim {
    let url = webhook(webhook_store).await;
    let config = SimConfig::new()
        .with_seed(7)
        .with_mode(BackupMode::SelfManaged(WebhookConfig::new(
            url,
            ApiKey::from(WEBHOOK_SECRET),
        )));
    PortalSim::start(config).await.unwrap()
}

/// The transport to `sim`: quick retries, no client-side rate limits.
pub fn portal(sim: &PortalSim) -> Portal {
    sim.portal_builder()
        .with_retry(
            RetryConfig::default()
                .with_initial_backoff(std::time::Duration::from_millis(5))
                .with_max_backoff(std::time::Duration::from_millis(20)),
        )
        .build()
        .unwrap()
}

pub fn portal_client(sim: &PortalSim, key: &ApiKey) -> ClientApi {
    portal(sim).client_with_api_key(key).unwrap()
}

pub fn custodian_client(sim: &PortalSim, keys: &SimClient) -> CustodianApi {
    portal(sim).custodian(&keys.custodian_api_key).unwrap()
}

/// A new client whose app has generated its wallet and confirmed its signing shares: the
/// state in which an integrator's backend backs it up.
pub async fn generated_client(sim: &PortalSim) -> (SimClient, ClientApi, GenerateResponse) {
    let (keys, generate) = sim.generated_client().await.unwrap();
    let client = portal_client(sim, &keys.client_api_key);
    (keys, client, generate)
}

/// The session of `client` over `stores`.
pub fn flow(
    client: ClientApi,
    keyring: Keyring,
    stores: Arc<dyn StoreFactory>,
    state: &Path,
) -> ClientFlow {
    stored(keyring, stores, state).session(client)
}

/// The custodian's operations over `stores`.
pub fn custodian_flow(
    custodian: CustodianApi,
    keyring: Keyring,
    stores: Arc<dyn StoreFactory>,
    state: &Path,
) -> CustodianFlow {
    stored(keyring, stores, state).custodian(custodian)
}

/// A flow with no Portal role, for the store-only operations.
pub fn stored(keyring: Keyring, stores: Arc<dyn StoreFactory>, state: &Path) -> Flow {
    Flow::new(keyring, stores, state).unwrap()
}

/// Portal-Managed Backups: each session's ciphertexts with Portal.
pub fn portal_managed() -> Arc<dyn StoreFactory> {
    Arc::new(PortalManaged)
}

/// A store of our own, the same for every session.
pub fn own(store: Arc<dyn BackupStore>) -> Arc<dyn StoreFactory> {
    Arc::new(store)
}

/// The real Self-Managed Backups webhook (`custodian-webhook`), keeping the custodian shares
/// sealed in `store` for the life of the test process.
async fn webhook(store: Arc<dyn BackupStore>) -> String {
    let server = WebhookServer::builder()
        .with_keyring(keyring())
        .with_store(store)
        .with_secrets(WebhookSecrets::parse(WEBHOOK_SECRET).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { server.serve(listener, std::future::pending::<()>()).await });
    url
}

/// Asserts the simulator saw nothing Portal would object to.
pub fn assert_clean(sim: &PortalSim) {
    let report = sim.report();
    assert!(report.is_clean(), "{report}");
}

pub fn fs_store(dir: &Path) -> Arc<dyn StoreFactory> {
    own(Arc::new(FsStore::new(dir).unwrap()))
}

/// A store whose puts can be made to fail (retryably, as an outage or a store going away
/// would), forwarding everything else.
#[derive(Debug)]
pub struct FlakyStore {
    inner: Arc<dyn BackupStore>,
    /// Puts that may still pass; `usize::MAX`: all of them.
    puts_left: std::sync::atomic::AtomicUsize,
    /// The batch size it claims (its batch calls still go one item at a time through its
    /// hooks): 1 unless told otherwise.
    batch: usize,
}

impl FlakyStore {
    pub fn new(inner: Arc<dyn BackupStore>) -> Self {
        Self {
            inner,
            puts_left: std::sync::atomic::AtomicUsize::new(usize::MAX),
            batch: 1,
        }
    }

    /// This store, claiming to take batches of `batch`, so that store-wide work takes its
    /// batch paths over it.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Every put fails (`true`) or passes (`false`) from now on.
    pub fn fail_puts(&self, fail: bool) {
        self.puts_left.store(
            if fail { 0 } else { usize::MAX },
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// The next `allowed` puts pass and every one after them fails: a run cut off midway, as
    /// far as the store can tell.
    pub fn fail_puts_after(&self, allowed: usize) {
        self.puts_left
            .store(allowed, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes one put from the allowance; false when none is left.
    fn allow_put(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.puts_left
            .fetch_update(SeqCst, SeqCst, |left| left.checked_sub(1))
            .is_ok()
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl BackupStore for FlakyStore {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        if !self.allow_put() {
            return Err(StorageError::Unavailable {
                backend: "flaky",
                source: "the test made puts fail".into(),
            });
        }
        self.inner.put(key, body, options).await
    }
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.inner.get(key).await
    }
    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        self.inner.get_versioned(key).await
    }
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        self.inner.list(client_id).await
    }
    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        self.inner.list_clients().await
    }
    fn stream_clients(&self) -> storage::ClientStream<'_> {
        self.inner.stream_clients()
    }
    // Batch calls go one item at a time, through this wrapper's own hooks.
    fn batch_size(&self) -> usize {
        self.batch
    }
    async fn read_clients(&self, client_ids: &[String]) -> Vec<storage::batch::ClientObjects> {
        storage::batch::read_clients_one_by_one(self, client_ids).await
    }
    async fn put_many(&self, puts: Vec<storage::batch::Put>) -> Vec<Result<(), StorageError>> {
        storage::batch::put_one_by_one(self, puts).await
    }
}

//! Webhook replicas over one store: a late write never replaces a newer share, and three
//! replicas over one PostgreSQL and one S3 (moto) store serve round-robin pairs and
//! three-way races with one replica killed mid-run.
//!
//! Every replica is the real server on its own Tokio runtime and thread, with its own store
//! client (its own connection pool or HTTP client) over the one database or bucket. A kill
//! shuts that runtime down without grace: each of its connections and store calls stops at
//! once, as with SIGKILL (`cargo xtask bench replicas` SIGKILLs replica processes).
//!
//! PostgreSQL and moto are started by the `test-services` crate; without them the tests
//! skip loudly, except under `cargo xtask ci`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test fixtures: a panic is a test failure"
)]

#[path = "replicas/driver.rs"]
mod driver;
mod support;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use custodian_webhook::storage::memory::MemoryStore;
use custodian_webhook::storage::{
    BackupKey, BackupStore, Capabilities, ObjectVersion, PutOptions, StorageError,
};
use driver::{Backend, KillAndRestart, Plan, Replica, Urls};
use tokio::sync::{Mutex, oneshot};

/// A store that can hold its next put back until told to go on: a slow write.
#[derive(Debug)]
struct HeldStore {
    inner: Arc<dyn BackupStore>,
    /// Armed: says when the next put has arrived, then waits for the release.
    hold: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

impl HeldStore {
    fn new(inner: Arc<dyn BackupStore>) -> Self {
        Self {
            inner,
            hold: Mutex::new(None),
        }
    }

    /// Holds the next put back; returns (put arrived, release).
    async fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (arrived_tx, arrived_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.hold.lock().await = Some((arrived_tx, release_rx));
        (arrived_rx, release_tx)
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl BackupStore for HeldStore {
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
        let hold = self.hold.lock().await.take();
        if let Some((arrived, release)) = hold {
            let _ = arrived.send(());
            let _ = release.await;
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
    // One at a time, through this wrapper's own hooks.
    fn batch_size(&self) -> usize {
        1
    }
    async fn read_clients(&self, client_ids: &[String]) -> Vec<storage::batch::ClientObjects> {
        storage::batch::read_clients_one_by_one(self, client_ids).await
    }
    async fn put_many(&self, puts: Vec<storage::batch::Put>) -> Vec<Result<(), StorageError>> {
        storage::batch::put_one_by_one(self, puts).await
    }
}

/// Two replicas over one store; the first one's next put is held back until a newer share
/// has landed through the second. The held (older) write must lose: the newer share stays,
/// and the older request is answered 503, not 200.
async fn late_write_loses(backend: &Backend) {
    let keyring = support::keyring();
    let held = Arc::new(HeldStore::new(backend.client().await));
    let server = |store: Arc<dyn BackupStore>| {
        custodian_webhook::WebhookServer::builder()
            .with_keyring(keyring.clone())
            .with_store(store)
            .with_secrets(support::secrets())
            .build()
            .unwrap()
    };
    let slow_server = server(Arc::clone(&held) as Arc<dyn BackupStore>);
    let slow_metrics = slow_server.metrics().clone();
    let slow = support::start(slow_server).await;
    let fast = support::start(server(backend.client().await)).await;
    let http = support::http();
    let run = test_services::random_hex();
    let method = "PASSWORD-SECP256K1";

    // A share is stored (the older request replaces it), and none is (it creates).
    for existing in [true, false] {
        let client = format!("cl_late_{run}_{existing}");
        if existing {
            let status = support::backup(&http, &fast.url(""), &client, method, "first").await;
            assert_eq!(status, 200, "{}", backend.name());
        }
        let (arrived, release) = held.arm().await;
        let older = {
            let (http, base, client) = (http.clone(), slow.url(""), client.clone());
            tokio::spawn(
                async move { support::backup(&http, &base, &client, method, "older").await },
            )
        };
        tokio::time::timeout(Duration::from_secs(20), arrived)
            .await
            .expect("the older write reached the store")
            .unwrap();
        let newer = support::backup(&http, &fast.url(""), &client, method, "newer").await;
        assert_eq!(newer, 200, "{}", backend.name());
        release.send(()).unwrap();
        let older = older.await.unwrap();
        assert_eq!(
            older,
            503,
            "{} (share existed: {existing}): the late write must fail, retryably",
            backend.name()
        );
        for replica in [&slow, &fast] {
            let got = support::fetch(&http, &replica.url(""), &client).await;
            assert_eq!(
                got,
                ["newer"],
                "{} (share existed: {existing})",
                backend.name()
            );
        }
    }
    // Each lost write is counted as superseded, not as a store error.
    let text = slow_metrics.encode();
    assert_eq!(
        support::sample(&text, "custodian_webhook_writes_superseded_total", &[]),
        Some(2.0),
        "{}",
        backend.name()
    );
    assert_eq!(
        support::sample(
            &text,
            "custodian_webhook_store_errors_total",
            &[("operation", "put")]
        ),
        None,
        "{}",
        backend.name()
    );
    slow.stop().await;
    fast.stop().await;
}

#[test]
fn a_late_write_never_replaces_a_newer_share_in_memory() {
    let backend = Backend::Memory(Arc::new(MemoryStore::new()));
    driver::block_on(late_write_loses(&backend));
}

#[test]
fn a_late_write_never_replaces_a_newer_share_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::Fs(dir.path().join("store"));
    driver::block_on(late_write_loses(&backend));
}

#[test]
fn a_late_write_never_replaces_a_newer_share_on_postgres() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    driver::block_on(late_write_loses(&backend));
}

#[test]
fn a_late_write_never_replaces_a_newer_share_on_s3() {
    let Some(backend) = Backend::s3() else {
        return;
    };
    driver::block_on(late_write_loses(&backend));
}

/// Three replicas over `backend`: pairs round-robin with three-way races mixed in, replica 1
/// killed a third of the way through and started again 300 ms later. Every request gets its
/// answer after at most one retry, nothing acknowledged is lost, every (client, method) holds
/// one share, and every replica gives the same answer.
fn three_replicas(backend: &Backend) {
    const PAIRS: usize = 240;
    const RACES: usize = 30;
    let keyring = support::keyring();
    let started: Vec<Option<Replica>> = (0..3)
        .map(|_| Some(Replica::start(&keyring, backend)))
        .collect();
    let urls: Urls = Arc::new(RwLock::new(
        started.iter().flatten().map(Replica::base).collect(),
    ));
    let replicas = Arc::new(std::sync::Mutex::new(started));
    let kill: KillAndRestart = {
        let (replicas, keyring, backend) = (Arc::clone(&replicas), keyring, backend.clone());
        Box::new(move |down| {
            let victim = replicas.lock().unwrap()[1].take().unwrap();
            victim.kill();
            std::thread::sleep(down);
            let restarted = Replica::start(&keyring, &backend);
            let base = restarted.base();
            replicas.lock().unwrap()[1] = Some(restarted);
            (1, base)
        })
    };
    let plan = Plan {
        run_id: format!("rep{}", &test_services::random_hex()[..12]),
        pairs: PAIRS,
        races: RACES,
        concurrency: 12,
        kill_after: Some((PAIRS + RACES) / 3),
        down: Duration::from_millis(300),
    };
    let mut report = driver::block_on(driver::run(Arc::clone(&urls), plan, Some(kill)));
    eprintln!("{}: {}", backend.name(), report.summary());
    for replica in replicas.lock().unwrap().drain(..).flatten() {
        replica.stop();
    }
    assert!(report.kill.is_some(), "the kill happened");
    assert_eq!(report.pairs, PAIRS, "{}", backend.name());
    assert_eq!(
        (report.errors, report.lost, report.inconsistent),
        (0, 0, 0),
        "{}: errors after one retry, shares lost, inconsistent answers: {:?}",
        backend.name(),
        report.first_errors
    );
    assert!(
        report.race_losers > 0,
        "{}: three-way races must have losers (answered 503)",
        backend.name()
    );
}

#[test]
fn three_replicas_over_one_postgres_store() {
    let Some(backend) = Backend::postgres() else {
        return;
    };
    three_replicas(&backend);
}

#[test]
fn three_replicas_over_one_s3_store() {
    let Some(backend) = Backend::s3() else {
        return;
    };
    three_replicas(&backend);
}

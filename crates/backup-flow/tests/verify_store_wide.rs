//! The store-wide restore drill at KMS speed: clients drilled concurrently, never more KMS
//! calls in flight than asked for, one KMS call per backup, and a bad share or client reported
//! while the others go on.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // tests: a panic is a failure

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::{
    DataKey, EncryptionContext, KeyEncryptionKey, KeyRef, Keyring, KmsError, Sealer, WrappedKey,
};
use backup_flow::storage::context::{BACKUP_SHARE_PAIR_ID, CLIENT_ID, CURVE, PURPOSE};
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::{BackupKey, BackupStore, PutOptions, ShareKind};
use backup_flow::{Finding, Flow};
use futures_util::StreamExt as _;

/// A KEK that takes `delay` per call (a KMS round trip) and counts the calls in flight.
#[derive(Debug)]
struct InFlight {
    inner: LocalKek,
    delay: Duration,
    now: AtomicUsize,
    peak: AtomicUsize,
    calls: AtomicUsize,
}

impl InFlight {
    async fn call<T>(&self, work: impl Future<Output = T>) -> T {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let out = work.await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl KeyEncryptionKey for InFlight {
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        self.inner.can_unwrap(key_ref)
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        self.call(self.inner.current_key_ref()).await
    }
    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        self.call(self.inner.wrap(key, context)).await
    }
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        self.call(self.inner.unwrap(wrapped, context)).await
    }
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        self.call(self.inner.generate_data_key(context)).await
    }
}

/// `clients` clients of two shares each (one backup: both sealed under one data key), as a
/// backup stores them.
async fn seed(store: &dyn BackupStore, keyring: &Keyring, clients: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..clients {
        let client_id = format!("client-{i:04}");
        let kek_context = EncryptionContext::new()
            .with(CLIENT_ID, client_id.as_str())
            .and_then(|c| c.with(PURPOSE, ShareKind::ClientBackup.as_str()))
            .unwrap();
        let sealer = Sealer::new(keyring, kek_context.clone()).await.unwrap();
        for curve in ["SECP256K1", "ED25519"] {
            let pair = format!("pair-{i}-{curve}");
            let context = kek_context
                .clone()
                .with(BACKUP_SHARE_PAIR_ID, pair.as_str())
                .and_then(|c| c.with(CURVE, curve))
                .unwrap();
            let sealed = sealer.seal(&context, b"a backup share").unwrap();
            let key = BackupKey::client_backup(&client_id, &pair, curve).unwrap();
            let text = envelope::to_text(&sealed);
            store
                .put(&key, text.into_bytes().into(), PutOptions::create())
                .await
                .unwrap();
        }
        ids.push(client_id);
    }
    ids
}

fn flow_over(store: Arc<dyn BackupStore>, kek: Arc<InFlight>, state: &std::path::Path) -> Flow {
    // The store-wide drill never calls Portal: the flow has no Portal role at all.
    let keyring = Keyring::new().with(kek as Arc<dyn KeyEncryptionKey>);
    Flow::new(keyring, store, state).unwrap()
}

fn in_flight(delay: Duration) -> Arc<InFlight> {
    Arc::new(InFlight {
        inner: LocalKek::generate().unwrap(),
        delay,
        now: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
        calls: AtomicUsize::new(0),
    })
}

fn ring(kek: &Arc<InFlight>) -> Keyring {
    Keyring::new().with(Arc::clone(kek) as Arc<dyn KeyEncryptionKey>)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_keeps_at_most_n_kms_calls_in_flight_and_more_than_one() {
    let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let kek = in_flight(Duration::from_millis(20));
    let clients = seed(store.as_ref(), &ring(&kek), 24).await;
    kek.peak.store(0, Ordering::SeqCst);
    kek.calls.store(0, Ordering::SeqCst);
    let flow = flow_over(store, Arc::clone(&kek), state.path());

    const CONCURRENCY: usize = 4;
    let checked: Vec<_> = flow
        .verify_store_wide(&clients, CONCURRENCY)
        .collect()
        .await;
    let peak = kek.peak.load(Ordering::SeqCst);
    assert!(
        (2..=CONCURRENCY).contains(&peak),
        "{peak} KMS calls were in flight at most; wanted more than 1 and at most {CONCURRENCY}"
    );
    assert_eq!(checked.len(), clients.len());
    for client in &checked {
        let shares = client.shares.as_ref().unwrap();
        assert_eq!(shares.len(), 2, "{client:?}");
        for share in shares {
            assert_eq!(share.result.as_ref().unwrap().finding, Finding::Ok);
        }
    }
    // Both shares of a backup open with one unwrap.
    assert_eq!(kek.calls.load(Ordering::SeqCst), clients.len());
}

/// A swapped share and a corrupt one are reported as what they are, and every other share of
/// every client is still checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_share_is_reported_and_the_others_go_on() {
    let (data, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let kek = in_flight(Duration::ZERO);
    let clients = seed(store.as_ref(), &ring(&kek), 6).await;
    let key = |i: usize, curve: &str| {
        BackupKey::client_backup(&clients[i], format!("pair-{i}-{curve}"), curve).unwrap()
    };
    // Client 1's SECP256K1 object is client 2's; client 4's ED25519 object is garbage.
    let foreign = store.get(&key(2, "SECP256K1")).await.unwrap();
    store
        .put(&key(1, "SECP256K1"), foreign, PutOptions::overwrite())
        .await
        .unwrap();
    store
        .put(
            &key(4, "ED25519"),
            b"pbe1.not-an-envelope".to_vec().into(),
            PutOptions::overwrite(),
        )
        .await
        .unwrap();
    let flow = flow_over(store, kek, state.path());

    let mut findings = BTreeMap::new();
    let mut drill = std::pin::pin!(flow.verify_store_wide(&clients, 3));
    while let Some(client) = drill.next().await {
        for share in client.shares.unwrap() {
            findings.insert(share.key, share.result.unwrap().finding);
        }
    }
    assert_eq!(findings.len(), 12);
    let bad: Vec<&String> = findings
        .iter()
        .filter(|(_, finding)| **finding != Finding::Ok)
        .map(|(key, _)| key)
        .collect();
    assert_eq!(
        bad,
        [
            &key(1, "SECP256K1").to_string(),
            &key(4, "ED25519").to_string()
        ]
    );
    assert!(
        bad.iter()
            .all(|k| matches!(findings[*k], Finding::WrongIdentity { .. }))
    );
}

//! Key rotation: what "already under the new key" means, every kind of sealed object, the
//! journal's unfinished backups, one bad object among good ones, and the proof count.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // tests: a panic is a failure

mod support;

use std::sync::Arc;

use backup_flow::Finding;
use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::testing::{CallCounter, HookedKek};
use backup_flow::envelope::{
    DataKey, EncryptionContext, KeyEncryptionKey, KeyRef, Keyring, KmsError, WrappedKey,
};
use backup_flow::storage::fs::FsStore;
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{
    BackupKey, BackupStore, Capabilities, ObjectVersion, PutOptions, ShareKind, StorageError,
};
use bytes::Bytes;
use custodian_webhook::ShareVault;
use portal_api::SecretShare;
use portal_sim::FaultRule;
use support::{assert_clean, flow, generated_client, portal_client, sim};

fn local() -> Arc<LocalKek> {
    Arc::new(LocalKek::generate().unwrap())
}

fn ring(kek: &Arc<LocalKek>) -> Keyring {
    Keyring::new().with(Arc::clone(kek) as Arc<dyn KeyEncryptionKey>)
}

/// What an AWS alias (or an unpinned Cloud KMS key) is: it wraps with the key it points to
/// today, and it can still open what the keys it pointed to before wrapped.
#[derive(Debug)]
struct AliasLike {
    now: Arc<LocalKek>,
    before: Vec<Arc<LocalKek>>,
}

#[async_trait::async_trait]
impl KeyEncryptionKey for AliasLike {
    fn provider(&self) -> &str {
        self.now.provider()
    }
    fn key_id(&self) -> &str {
        "alias/backup"
    }
    fn can_unwrap(&self, key_ref: &KeyRef) -> bool {
        self.now.can_unwrap(key_ref) || self.before.iter().any(|k| k.can_unwrap(key_ref))
    }
    async fn current_key_ref(&self) -> Result<KeyRef, KmsError> {
        self.now.current_key_ref().await
    }
    async fn wrap(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<WrappedKey, KmsError> {
        self.now.wrap(key, context).await
    }
    async fn unwrap(
        &self,
        wrapped: &WrappedKey,
        context: &EncryptionContext,
    ) -> Result<DataKey, KmsError> {
        for kek in std::iter::once(&self.now).chain(&self.before) {
            if kek.can_unwrap(wrapped.key_ref()) {
                return kek.unwrap(wrapped, context).await;
            }
        }
        Err(KmsError::UnwrapFailed)
    }
    async fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, WrappedKey), KmsError> {
        self.now.generate_data_key(context).await
    }
}

/// Rotating to an alias that can still open the old key must rewrap everything: before the
/// fix, "could open" was read as "is current" and the rotation did nothing.
#[tokio::test]
async fn rotation_to_an_alias_rewraps_what_the_alias_could_merely_open() {
    let sim = sim(true).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (k1, k2) = (local(), local());
    let store = support::fs_store(data.path());
    let flow = flow(client, ring(&k1), Arc::clone(&store), state.path());
    flow.backup(&generate).await.unwrap();

    let alias: Arc<dyn KeyEncryptionKey> = Arc::new(AliasLike {
        now: Arc::clone(&k2),
        before: vec![Arc::clone(&k1)],
    });
    let clients = [keys.client_id.clone()];
    let report = flow
        .flow()
        .rotate(&Keyring::new().with(alias), &clients)
        .await
        .unwrap();
    assert_eq!(
        (report.rewrapped, report.already_current),
        (2, 0),
        "{report:?}"
    );
    assert_eq!(report.not_under_target, 0);
    assert!(report.is_complete());
    assert_eq!(
        report.target_keys,
        vec![k2.current_key_ref().await.unwrap().to_string()]
    );

    // Only K2 is needed now, and K1 opens nothing.
    let client = portal_client(&sim, &keys.client_api_key);
    let only_k2 = support::flow(client.clone(), ring(&k2), Arc::clone(&store), state.path());
    assert!(only_k2.verify().await.unwrap().is_ok());
    let only_k1 = support::flow(client, ring(&k1), store, state.path());
    let report = only_k1.verify().await.unwrap();
    assert!(
        report
            .checked
            .iter()
            .all(|c| matches!(c.finding, Finding::WrongIdentity { .. })),
        "{report:?}"
    );
    assert_clean(&sim);
}

/// Custodian backup shares kept by the webhook's vault are rotated too, each under its own
/// identity: a vault on the new key alone serves every share afterwards.
#[tokio::test]
async fn rotation_covers_custodian_shares_so_a_webhook_on_the_new_key_serves_them() {
    let sim = sim(true).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (old, new) = (local(), local());
    let fs: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let flow = flow(
        client,
        ring(&old),
        support::own(Arc::clone(&fs)),
        state.path(),
    );
    flow.backup(&generate).await.unwrap();
    let old_vault = ShareVault::new(ring(&old), Arc::clone(&fs)).unwrap();
    for method in ["GDRIVE", "PASSWORD"] {
        old_vault
            .store(
                &keys.client_id,
                method,
                &SecretShare::new(format!("{{\"share\":\"custodian-{method}\"}}")),
            )
            .await
            .unwrap();
    }

    let clients = [keys.client_id.clone()];
    let report = flow.flow().rotate(&ring(&new), &clients).await.unwrap();
    assert_eq!(
        report.rewrapped, 4,
        "2 client and 2 custodian shares: {report:?}"
    );
    assert!(report.is_complete(), "{report:?}");

    let new_vault = ShareVault::new(ring(&new), Arc::clone(&fs)).unwrap();
    let mut served: Vec<String> = new_vault
        .fetch(&keys.client_id)
        .await
        .unwrap()
        .iter()
        .map(|s| s.expose_secret().to_owned())
        .collect();
    served.sort();
    assert_eq!(
        served,
        [
            "{\"share\":\"custodian-GDRIVE\"}",
            "{\"share\":\"custodian-PASSWORD\"}"
        ]
    );
    assert!(
        old_vault.fetch(&keys.client_id).await.is_err(),
        "the old key opens no custodian share"
    );
    assert_clean(&sim);
}

/// A backup left half-done before the rotation (sealed in the journal, not stored; or stored
/// but never confirmed) still finishes afterwards with the new keys alone, without a second
/// `/v1/backup`.
#[tokio::test]
async fn unfinished_backups_in_the_journal_finish_after_the_rotation() {
    for stored_before in [false, true] {
        let sim = sim(true).await;
        let (keys, client, generate) = generated_client(&sim).await;
        let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (old, new) = (local(), local());
        let fs: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
        let flaky = Arc::new(support::FlakyStore::new(Arc::clone(&fs)));
        let flow = flow(
            client,
            ring(&old),
            support::own(Arc::clone(&flaky) as Arc<dyn BackupStore>),
            state.path(),
        );
        if stored_before {
            sim.add_fault(
                "PATCH /api/v3/clients/me/backup-share-pairs: error=1.0, status=503"
                    .parse::<FaultRule>()
                    .unwrap(),
            )
            .unwrap();
        } else {
            flaky.fail_puts(true);
        }
        assert!(flow.backup(&generate).await.is_err());
        sim.clear_faults();
        flaky.fail_puts(false);

        let report = flow
            .flow()
            .rotate(&ring(&new), std::slice::from_ref(&keys.client_id))
            .await
            .unwrap();
        assert_eq!(
            report.journal_rewrapped, 2,
            "stored before: {stored_before}: {report:?}"
        );
        assert_eq!(report.rewrapped, if stored_before { 2 } else { 0 });
        assert!(report.is_complete(), "{report:?}");

        let client = portal_client(&sim, &keys.client_api_key);
        let with_new = support::flow(
            client,
            ring(&new),
            support::own(Arc::clone(&fs)),
            state.path(),
        );
        let outcome = with_new.backup(&generate).await.unwrap();
        assert_eq!(outcome.status, "confirmed");
        assert_eq!(outcome.backup_requests, 1, "no second /v1/backup");
        assert!(with_new.verify().await.unwrap().is_ok());
        assert_clean(&sim);
    }
}

/// One object that cannot be rotated (sealed under a key the old keyring lacks, or stored in
/// another share's place) is reported; the others are rotated; the proof counts what is left.
#[tokio::test]
async fn a_bad_object_is_reported_the_rest_rotate_and_the_proof_counts_it() {
    let sim = sim(true).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (old, new, stranger) = (local(), local(), local());
    let fs: Arc<dyn BackupStore> = Arc::new(FsStore::new(data.path()).unwrap());
    let flow = flow(
        client,
        ring(&old),
        support::own(Arc::clone(&fs)),
        state.path(),
    );
    flow.backup(&generate).await.unwrap();

    // A custodian share sealed under a key this operator never had.
    ShareVault::new(ring(&stranger), Arc::clone(&fs))
        .unwrap()
        .store(
            &keys.client_id,
            "GDRIVE",
            &SecretShare::new("{\"share\":\"x\"}".into()),
        )
        .await
        .unwrap();
    // A client backup ciphertext copied into a pair it does not belong to.
    let listed = fs.list(&keys.client_id).await.unwrap();
    let source = listed
        .iter()
        .find(|k| k.kind() == ShareKind::ClientBackup)
        .unwrap();
    let misplaced =
        BackupKey::client_backup(&keys.client_id, "bsp-not-its-own", "SECP256K1").unwrap();
    let body: Bytes = fs.get(source).await.unwrap();
    fs.put(&misplaced, body, PutOptions::create())
        .await
        .unwrap();

    let report = flow
        .flow()
        .rotate(&ring(&new), std::slice::from_ref(&keys.client_id))
        .await
        .unwrap();
    assert_eq!(report.rewrapped, 2, "{report:?}");
    assert_eq!(report.failed.len(), 2, "{report:?}");
    assert!(
        report.failed.iter().any(
            |f| f.key == misplaced.to_string() && f.reason.contains("sealed for another share")
        )
    );
    assert_eq!(report.not_under_target, 2);
    assert!(!report.is_complete());
}

/// Lets a "webhook" store a newer share between rotate's read and its write, once; takes
/// batches of `batch` (the newer share lands just before a batch's puts).
#[derive(Debug)]
struct RacingStore {
    inner: Arc<dyn BackupStore>,
    newer: std::sync::Mutex<Option<Bytes>>,
    batch: usize,
}

#[async_trait::async_trait]
#[deny(clippy::missing_trait_methods)]
impl BackupStore for RacingStore {
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
        let newer = self.newer.lock().unwrap().take();
        if let Some(newer) = newer {
            self.inner
                .put(key, newer, PutOptions::overwrite())
                .await
                .unwrap();
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
    fn batch_size(&self) -> usize {
        self.batch
    }
    async fn read_clients(&self, client_ids: &[String]) -> Vec<storage::batch::ClientObjects> {
        storage::batch::read_clients_one_by_one(self, client_ids).await
    }
    async fn put_many(&self, puts: Vec<storage::batch::Put>) -> Vec<Result<(), StorageError>> {
        if self.batch == 1 {
            return storage::batch::put_one_by_one(self, puts).await;
        }
        let newer = self.newer.lock().unwrap().take();
        if let (Some(newer), Some((key, ..))) = (newer, puts.first()) {
            self.inner
                .put(key, newer, PutOptions::overwrite())
                .await
                .unwrap();
        }
        storage::batch::put_one_by_one(&self.inner, puts).await
    }
}

/// A custodian share the live webhook replaces while rotate rewrites the older one: the
/// rewrite loses the compare-and-swap, rotate rewraps the newer share, and the newer share
/// is what a webhook on the new key serves. (With an unconditional overwrite the older
/// share would have come back.)
#[tokio::test]
async fn a_share_replaced_during_the_rotation_is_never_put_back() {
    // One at a time, and in a batch (the conflict comes back from the batch's put).
    for batch in [1, 64] {
        share_replaced_during_the_rotation(batch).await;
    }
}

async fn share_replaced_during_the_rotation(batch: usize) {
    let sim = sim(false).await;
    let (keys, client, _generate) = generated_client(&sim).await;
    let state = tempfile::tempdir().unwrap();
    let (old, new) = (local(), local());
    let memory: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
    assert!(memory.capabilities().compare_and_swap);
    let vault = |keyring: Keyring, store: &Arc<dyn BackupStore>| {
        ShareVault::new(keyring, Arc::clone(store)).unwrap()
    };
    vault(ring(&old), &memory)
        .store(&keys.client_id, "GDRIVE", &SecretShare::new("older".into()))
        .await
        .unwrap();
    let scratch: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
    vault(ring(&old), &scratch)
        .store(&keys.client_id, "GDRIVE", &SecretShare::new("newer".into()))
        .await
        .unwrap();
    let scratch_key = scratch.list(&keys.client_id).await.unwrap().remove(0);
    assert_eq!(
        memory.list(&keys.client_id).await.unwrap(),
        std::slice::from_ref(&scratch_key)
    );
    let newer = scratch.get(&scratch_key).await.unwrap();

    let racing: Arc<dyn BackupStore> = Arc::new(RacingStore {
        inner: Arc::clone(&memory),
        newer: std::sync::Mutex::new(Some(newer)),
        batch,
    });
    let flow = flow(client, ring(&old), support::own(racing), state.path());
    let report = flow
        .flow()
        .rotate(&ring(&new), std::slice::from_ref(&keys.client_id))
        .await
        .unwrap();
    assert_eq!(
        (report.rewrapped, report.conflicts_redone),
        (1, 1),
        "{report:?}"
    );
    assert!(report.is_complete(), "{report:?}");

    let served = vault(ring(&new), &memory)
        .fetch(&keys.client_id)
        .await
        .unwrap();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0].expose_secret(), "newer");
    assert_clean(&sim);
}

/// A local KEK that counts its calls.
fn counting() -> (Arc<CallCounter>, Keyring) {
    let calls = Arc::new(CallCounter::default());
    let kek = HookedKek::new(local()).with_hook(Arc::clone(&calls));
    (
        calls,
        Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>),
    )
}

/// (unwraps, wraps including fresh data keys) since the last take.
fn take(calls: &CallCounter) -> (usize, usize) {
    let taken = (calls.unwraps(), calls.wraps());
    calls.reset();
    taken
}

/// The two shares of a backup were sealed under one data key: rotation unwraps it once and
/// wraps it once for both, and both come out with the same wrapped key, so that a restore
/// drill afterwards still costs one unwrap (before: two and two, then two per drill).
#[tokio::test]
async fn a_backup_is_rotated_as_a_unit_with_one_unwrap_and_one_wrap() {
    let sim = sim(true).await;
    let (keys, client, generate) = generated_client(&sim).await;
    let (state, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ((old, old_ring), (new, new_ring)) = (counting(), counting());
    let store = support::fs_store(data.path());
    let flow = flow(client, old_ring, Arc::clone(&store), state.path());
    flow.backup(&generate).await.unwrap();
    take(&old);

    let report = flow
        .flow()
        .rotate(&new_ring, std::slice::from_ref(&keys.client_id))
        .await
        .unwrap();
    assert_eq!(report.rewrapped, 2, "{report:?}");
    assert_eq!(take(&old), (1, 0), "one unwrap for the backup's two shares");
    assert_eq!(take(&new), (0, 1), "one wrap for the backup's two shares");

    let client = portal_client(&sim, &keys.client_api_key);
    let with_new = support::flow(client, new_ring, store, state.path());
    assert!(with_new.verify().await.unwrap().is_ok());
    assert_eq!(
        take(&new),
        (1, 0),
        "the drill opens both shares with one unwrap"
    );
    assert_clean(&sim);
}

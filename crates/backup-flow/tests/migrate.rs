//! `Migration` between two stores of one's own: every client ciphertext copied create-only
//! and drilled on the target, one KMS call per backup, a target that fails midway and a
//! rerun that finishes with nothing lost or doubled, a different object on the target left
//! alone, a corrupted source object reported while the rest moves, custodian shares left
//! where they are, and the source untouched.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)] // tests: a panic is a failure

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_flow::envelope::local::LocalKek;
use backup_flow::envelope::testing::{CallCounter, HookedKek};
use backup_flow::envelope::{KeyEncryptionKey, Keyring};
use backup_flow::migrate::{MigratedClient, Migration, Moved};
use backup_flow::storage::memory::MemoryStore;
use backup_flow::storage::{BackupKey, BackupStore, Capabilities, PutOptions, StorageError};
use bytes::Bytes;
use futures_util::StreamExt as _;
use support::backups::store_backup;

const CLIENTS: usize = 12;

/// `CLIENTS` clients of one backup each (two shares under one data key), plus a custodian
/// share of client 0 (which must not move).
async fn seed(store: &dyn BackupStore, keyring: &Keyring) {
    for i in 0..CLIENTS {
        let pair = |curve: &str| format!("pair-{i}-{curve}");
        store_backup(
            store,
            keyring,
            &format!("client-{i:03}"),
            pair,
            b"a backup share",
        )
        .await;
    }
    let custodian = BackupKey::custodian_backup("client-000", "GDRIVE").unwrap();
    store
        .put(
            &custodian,
            Bytes::from_static(b"sealed elsewhere"),
            PutOptions::create(),
        )
        .await
        .unwrap();
}

/// Every object of `store`, by path form.
async fn contents(store: &dyn BackupStore) -> BTreeMap<String, Bytes> {
    let mut all = BTreeMap::new();
    for client in store.list_clients().await.unwrap() {
        for key in store.list(&client).await.unwrap() {
            all.insert(key.to_string(), store.get(&key).await.unwrap());
        }
    }
    all
}

/// The client backup objects of `store`, by path form.
async fn client_backups(store: &dyn BackupStore) -> BTreeMap<String, Bytes> {
    contents(store)
        .await
        .into_iter()
        .filter(|(key, _)| key.contains("/client-backup/"))
        .collect()
}

async fn migrate(
    migration: &Migration,
    source: &dyn BackupStore,
    concurrency: usize,
) -> Vec<MigratedClient> {
    let clients = source.list_clients().await.unwrap();
    migration
        .run(
            futures_util::stream::iter(clients.into_iter().map(Ok)),
            concurrency,
        )
        .map(Result::unwrap)
        .collect()
        .await
}

/// Counts per outcome (`error` for an object that could not be moved).
fn tally(done: &[MigratedClient]) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    for client in done {
        for object in client.objects.as_ref().unwrap() {
            let what = match &object.result {
                Ok(Moved::Moved) => "moved",
                Ok(Moved::AlreadyMoved) => "already-moved",
                Ok(Moved::Conflict) => "conflict",
                Ok(Moved::BadSource { .. }) => "bad-source",
                Ok(Moved::Skipped { .. }) => "skipped",
                Ok(_) => "other",
                Err(e) => {
                    assert!(e.is_retryable(), "{e}");
                    "error"
                }
            };
            *counts.entry(what).or_default() += 1;
        }
    }
    counts
}

/// `store` as a store that takes batches of `batch` (1: one client at a time), so that a
/// migration takes its batch path (one read of the source, one create and one read-back of
/// the target per batch) or its one-by-one path.
fn batched(store: Arc<dyn BackupStore>, batch: usize) -> Arc<dyn BackupStore> {
    Arc::new(support::FlakyStore::new(store).with_batch(batch))
}

/// A local KEK that counts its calls (an unwrap is the KMS call of a drill), and its keyring.
fn counting() -> (Arc<CallCounter>, Keyring) {
    let calls = Arc::new(CallCounter::default());
    let kek = HookedKek::new(Arc::new(LocalKek::generate().unwrap())).with_hook(Arc::clone(&calls));
    (
        calls,
        Keyring::new().with(Arc::new(kek) as Arc<dyn KeyEncryptionKey>),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_cut_off_midway_and_a_rerun_move_everything_once_with_one_kms_call_per_backup() {
    for batch in [1, 64] {
        cut_off_and_rerun(batch).await;
    }
}

async fn cut_off_and_rerun(batch: usize) {
    let (kek, keyring) = counting();
    let source = Arc::new(MemoryStore::new());
    seed(source.as_ref(), &keyring).await;
    let before = contents(source.as_ref()).await;
    let target = Arc::new(MemoryStore::new());
    let cut = Arc::new(support::FlakyStore::new(Arc::clone(&target) as _).with_batch(batch));
    cut.fail_puts_after(9);

    let first = Migration::new(
        keyring.clone(),
        batched(Arc::clone(&source) as _, batch),
        cut,
    )
    .unwrap();
    let done = migrate(&first, source.as_ref(), 4).await;
    let counts = tally(&done);
    assert_eq!(counts["moved"], 9, "{counts:?}");
    assert_eq!(counts["error"], CLIENTS * 2 - 9, "{counts:?}");
    assert_eq!(counts["skipped"], 1, "the custodian share: {counts:?}");
    assert_eq!(client_backups(target.as_ref()).await.len(), 9);

    kek.reset();
    let rerun = Migration::new(
        keyring,
        batched(Arc::clone(&source) as _, batch),
        batched(Arc::clone(&target) as _, batch),
    )
    .unwrap();
    let done = migrate(&rerun, source.as_ref(), 4).await;
    let counts = tally(&done);
    assert_eq!(counts["already-moved"], 9, "{counts:?}");
    assert_eq!(counts["moved"], CLIENTS * 2 - 9, "{counts:?}");
    assert!(!counts.contains_key("error"), "{counts:?}");
    // Source and target drills of one backup: one unwrap, the two shares share a data key.
    assert_eq!(kek.unwraps(), CLIENTS);

    // Nothing lost, nothing doubled, the custodian share not moved, the source unchanged.
    let moved = contents(target.as_ref()).await;
    assert_eq!(moved, client_backups(source.as_ref()).await);
    assert_eq!(moved.len(), CLIENTS * 2);
    assert_eq!(contents(source.as_ref()).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_object_on_the_target_is_a_conflict_and_is_left_alone() {
    for batch in [1, 64] {
        conflict_left_alone(batch).await;
    }
}

async fn conflict_left_alone(batch: usize) {
    let (_, keyring) = counting();
    let source = Arc::new(MemoryStore::new());
    seed(source.as_ref(), &keyring).await;
    let target = Arc::new(MemoryStore::new());
    let taken = BackupKey::client_backup("client-003", "pair-3-ED25519", "ED25519").unwrap();
    // Another share's valid ciphertext (client 4's), already on the target under client 3's key.
    let other = source
        .get(&BackupKey::client_backup("client-004", "pair-4-ED25519", "ED25519").unwrap())
        .await
        .unwrap();
    target
        .put(&taken, other.clone(), PutOptions::create())
        .await
        .unwrap();

    let migration = Migration::new(
        keyring,
        batched(Arc::clone(&source) as _, batch),
        batched(Arc::clone(&target) as _, batch),
    )
    .unwrap();
    let done = migrate(&migration, source.as_ref(), 3).await;
    let counts = tally(&done);
    assert_eq!(counts["conflict"], 1, "{counts:?}");
    assert_eq!(counts["moved"], CLIENTS * 2 - 1, "{counts:?}");
    let conflict = done
        .iter()
        .flat_map(|c| c.objects.as_ref().unwrap())
        .find(|o| matches!(o.result, Ok(Moved::Conflict)))
        .unwrap();
    assert_eq!(conflict.key, taken.to_string());
    assert_eq!(
        target.get(&taken).await.unwrap(),
        other,
        "never overwritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_source_object_is_reported_not_copied_and_the_rest_moves() {
    for batch in [1, 64] {
        corrupted_source_reported(batch).await;
    }
}

async fn corrupted_source_reported(batch: usize) {
    let (_, keyring) = counting();
    let source = Arc::new(MemoryStore::new());
    seed(source.as_ref(), &keyring).await;
    // A tampered ciphertext (one character of the text form changed) and one moved into
    // another share's place (client 6's object under client 5's key).
    let tampered = BackupKey::client_backup("client-002", "pair-2-SECP256K1", "SECP256K1").unwrap();
    let mut text = String::from_utf8(source.get(&tampered).await.unwrap().to_vec()).unwrap();
    let last = text.pop().unwrap();
    text.push(if last == 'A' { 'B' } else { 'A' });
    source
        .put(&tampered, text.into_bytes().into(), PutOptions::overwrite())
        .await
        .unwrap();
    let swapped = BackupKey::client_backup("client-005", "pair-5-ED25519", "ED25519").unwrap();
    let foreign = source
        .get(&BackupKey::client_backup("client-006", "pair-6-ED25519", "ED25519").unwrap())
        .await
        .unwrap();
    source
        .put(&swapped, foreign, PutOptions::overwrite())
        .await
        .unwrap();

    let target = Arc::new(MemoryStore::new());
    let migration = Migration::new(
        keyring,
        batched(Arc::clone(&source) as _, batch),
        batched(Arc::clone(&target) as _, batch),
    )
    .unwrap();
    let done = migrate(&migration, source.as_ref(), 2).await;
    let counts = tally(&done);
    assert_eq!(counts["bad-source"], 2, "{counts:?}");
    assert_eq!(counts["moved"], CLIENTS * 2 - 2, "{counts:?}");
    let on_target = client_backups(target.as_ref()).await;
    assert!(!on_target.contains_key(&tampered.to_string()));
    assert!(!on_target.contains_key(&swapped.to_string()));
    assert_eq!(on_target.len(), CLIENTS * 2 - 2);
}

#[tokio::test]
async fn a_target_that_cannot_create_only_is_refused() {
    let (_, keyring) = counting();
    #[derive(Debug)]
    struct NoCreate(MemoryStore);
    #[async_trait::async_trait]
    impl BackupStore for NoCreate {
        fn name(&self) -> &'static str {
            "no-create"
        }
        fn capabilities(&self) -> Capabilities {
            let mut caps = self.0.capabilities();
            caps.conditional_create = false;
            caps
        }
        async fn put(&self, k: &BackupKey, b: Bytes, o: PutOptions) -> Result<(), StorageError> {
            self.0.put(k, b, o).await
        }
        async fn get(&self, k: &BackupKey) -> Result<Bytes, StorageError> {
            self.0.get(k).await
        }
        async fn delete(&self, k: &BackupKey) -> Result<(), StorageError> {
            self.0.delete(k).await
        }
        async fn list(&self, c: &str) -> Result<Vec<BackupKey>, StorageError> {
            self.0.list(c).await
        }
    }
    let err = Migration::new(
        keyring,
        Arc::new(MemoryStore::new()),
        Arc::new(NoCreate(MemoryStore::new())),
    )
    .unwrap_err();
    assert!(err.to_string().contains("never overwrites"), "{err}");
}

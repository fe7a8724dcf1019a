//! The conformance kit, run on the memory store (directly, through `Arc<dyn BackupStore>`,
//! and with capabilities taken away), and on deliberately broken stores that it must catch
//! at the expected check.
#![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)] // the broken stores below are test fixtures

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use storage::conformance::{self, check_store};
use storage::memory::MemoryStore;
use storage::{
    BackupKey, BackupStore, Capabilities, ObjectVersion, PutMode, PutOptions, StorageError,
};

mod memory_store {
    storage::store_conformance_tests!(storage::memory::MemoryStore::new());
}

mod memory_store_through_arc_dyn {
    storage::store_conformance_tests!({
        let store: std::sync::Arc<dyn storage::BackupStore> =
            std::sync::Arc::new(storage::memory::MemoryStore::new());
        store
    });
}

mod memory_store_like_portal {
    // Portal-managed: overwrite only; no delete, list or create-only.
    storage::store_conformance_tests!({
        let mut caps = storage::Capabilities::all();
        caps.conditional_create = false;
        caps.delete = false;
        caps.list = false;
        storage::memory::MemoryStore::with_capabilities(caps)
    });
}

mod memory_store_without_compare_and_swap {
    storage::store_conformance_tests!({
        let mut caps = storage::Capabilities::all();
        caps.compare_and_swap = false;
        storage::memory::MemoryStore::with_capabilities(caps)
    });
}

mod memory_store_create_only {
    // Write-once: create-only, no overwrite.
    storage::store_conformance_tests!({
        let mut caps = storage::Capabilities::all();
        caps.overwrite = false;
        storage::memory::MemoryStore::with_capabilities(caps)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_store_passes_through_arc_dyn_and_box_dyn() {
    let store: Arc<dyn BackupStore> = Arc::new(MemoryStore::new());
    check_store(&store).await.unwrap();
    let store: Box<dyn BackupStore> = Box::new(MemoryStore::new());
    check_store(&store).await.unwrap();
    assert_eq!(conformance::CHECKS.len(), 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kit_removes_only_what_it_wrote() {
    let store = MemoryStore::new();
    let theirs =
        BackupKey::client_backup("conformance-0000000000000000", "bsp", "ED25519").unwrap();
    let mine = BackupKey::custodian_backup("cl_real", "GDRIVE").unwrap();
    for key in [&theirs, &mine] {
        store
            .put(key, Bytes::from_static(b"keep me"), PutOptions::create())
            .await
            .unwrap();
    }
    check_store(&store).await.unwrap();
    assert_eq!(store.keys(), [mine, theirs]); // in path order
}

/// What each broken store below gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// Create-only silently overwrites.
    CreateOverwrites,
    /// Create-only checks, then (after a yield) inserts: racing creates all win.
    RacyCreate,
    /// Copies the map, yields, writes the copy back: concurrent writes get lost.
    LosesWrites,
    /// Lists by string prefix without the separator: `cl_1` lists `cl_10`'s keys.
    ListsByPrefix,
    /// Says it can delete; `delete` does nothing.
    DeleteIsANoOp,
    /// Truncates bodies over 1 MiB.
    Truncates,
    /// Ignores the curve in the storage name.
    IgnoresCurve,
    /// Overwrites in place without truncating, as a file opened without `O_TRUNC`.
    NoTruncate,
    /// A compare-and-swap put ignores the version: a plain overwrite.
    UpdateIgnoresVersion,
    /// A compare-and-swap put compares, then (after a yield) writes: racing updates all win.
    RacyUpdate,
    /// Versions count per key from 1 again after a delete, so a stale version from before the
    /// delete matches the object written after it.
    VersionRestartsAfterDelete,
}

#[derive(Debug)]
struct Broken {
    bug: Bug,
    map: Mutex<BTreeMap<String, Bytes>>,
    /// The version of each stored name.
    versions: Mutex<BTreeMap<String, u64>>,
    /// Versions given so far (versions never repeat, unless the bug says so).
    counter: Mutex<u64>,
}

impl Broken {
    fn new(bug: Bug) -> Self {
        Self {
            bug,
            map: Mutex::new(BTreeMap::new()),
            versions: Mutex::new(BTreeMap::new()),
            counter: Mutex::new(0),
        }
    }

    fn bump(&self, name: &str) {
        let mut versions = self.versions.lock().unwrap();
        let next = if self.bug == Bug::VersionRestartsAfterDelete {
            versions.get(name).map_or(1, |v| v + 1)
        } else {
            let mut counter = self.counter.lock().unwrap();
            *counter += 1;
            *counter
        };
        versions.insert(name.to_owned(), next);
    }

    fn version_of(&self, name: &str) -> Option<ObjectVersion> {
        let versions = self.versions.lock().unwrap();
        versions
            .get(name)
            .map(|v| ObjectVersion::from_version(v.to_string()))
    }

    fn name_of(&self, key: &BackupKey) -> String {
        if self.bug == Bug::IgnoresCurve {
            let [a, b, _, d, e] = key.segments();
            format!("{a}/{b}/{d}/{e}")
        } else {
            key.to_path()
        }
    }
}

#[async_trait::async_trait]
impl BackupStore for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<(), StorageError> {
        let name = self.name_of(key);
        let body = if self.bug == Bug::Truncates {
            body.slice(..body.len().min(1 << 20))
        } else {
            body
        };
        let exists = self.map.lock().unwrap().contains_key(&name);
        if let PutMode::Update(expected) = &opts.mode {
            let matches = self.version_of(&name).as_ref() == Some(expected);
            if !matches && self.bug != Bug::UpdateIgnoresVersion {
                return Err(StorageError::Conflict { key: key.clone() });
            }
            if self.bug == Bug::RacyUpdate {
                tokio::task::yield_now().await;
            }
            self.map.lock().unwrap().insert(name.clone(), body);
            self.bump(&name);
            return Ok(());
        }
        if matches!(opts.mode, PutMode::Create) && exists && self.bug != Bug::CreateOverwrites {
            return Err(StorageError::AlreadyExists { key: key.clone() });
        }
        self.bump(&name);
        match opts.mode {
            PutMode::Overwrite if exists && self.bug == Bug::NoTruncate => {
                let mut map = self.map.lock().unwrap();
                let old = map.get(&name).cloned().unwrap_or_default();
                let mut merged = body.to_vec();
                merged.extend_from_slice(old.get(body.len().min(old.len())..).unwrap());
                map.insert(name, merged.into());
                return Ok(());
            }
            _ => {}
        }
        if matches!(self.bug, Bug::RacyCreate | Bug::LosesWrites) {
            let mut copy = self.map.lock().unwrap().clone();
            tokio::task::yield_now().await;
            if self.bug == Bug::RacyCreate {
                self.map.lock().unwrap().insert(name, body);
            } else {
                copy.insert(name, body);
                *self.map.lock().unwrap() = copy;
            }
            return Ok(());
        }
        self.map.lock().unwrap().insert(name, body);
        Ok(())
    }
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.map
            .lock()
            .unwrap()
            .get(&self.name_of(key))
            .cloned()
            .ok_or_else(|| StorageError::NotFound { key: key.clone() })
    }
    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        let name = self.name_of(key);
        let body = self.get(key).await?;
        let version = self.version_of(&name).unwrap();
        Ok((body, version))
    }
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        if self.bug != Bug::DeleteIsANoOp {
            let name = self.name_of(key);
            self.map.lock().unwrap().remove(&name);
            if self.bug != Bug::VersionRestartsAfterDelete {
                self.versions.lock().unwrap().remove(&name);
            } else {
                // Forgets the object but restarts its count: the next write is version 1.
                self.versions.lock().unwrap().insert(name, 0);
            }
        }
        Ok(())
    }
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        BackupKey::check_client_id(client_id)?;
        let prefix = if self.bug == Bug::ListsByPrefix {
            client_id.to_owned()
        } else {
            format!("{client_id}/")
        };
        Ok(self
            .map
            .lock()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .map(|k| BackupKey::from_path(k).unwrap())
            .collect())
    }
}

#[tokio::test]
async fn broken_stores_fail_at_the_expected_check() {
    for (bug, check) in [
        (Bug::Truncates, "large_body"),
        (Bug::IgnoresCurve, "not_found"),
        (Bug::CreateOverwrites, "create_only"),
        (Bug::NoTruncate, "overwrite"),
        (Bug::DeleteIsANoOp, "delete"),
        (Bug::ListsByPrefix, "list"),
        (Bug::LosesWrites, "concurrent_writers"),
        (Bug::RacyCreate, "concurrent_create"),
        (Bug::UpdateIgnoresVersion, "compare_and_swap"),
        (Bug::VersionRestartsAfterDelete, "compare_and_swap"),
        (Bug::RacyUpdate, "concurrent_update"),
    ] {
        let failure = check_store(&Broken::new(bug)).await.unwrap_err();
        assert_eq!(failure.check, check, "{bug:?}: {failure}");
        assert!(!failure.reason.is_empty());
    }
}

#[tokio::test]
async fn a_store_that_lies_about_its_capabilities_is_caught() {
    /// Says it cannot list, but lists.
    #[derive(Debug)]
    struct Liar(MemoryStore);
    #[async_trait::async_trait]
    impl BackupStore for Liar {
        fn name(&self) -> &'static str {
            "liar"
        }
        fn capabilities(&self) -> Capabilities {
            let mut caps = Capabilities::all();
            caps.list = false;
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
    let failure = check_store(&Liar(MemoryStore::new())).await.unwrap_err();
    assert_eq!(failure.check, "list");
    assert!(failure.reason.contains("capabilities"), "{failure}");
}

#[tokio::test]
async fn a_wrapper_that_claims_compare_and_swap_without_forwarding_it_is_caught() {
    /// Forwards everything but `get_versioned`, whose default answers NotSupported, while
    /// its capabilities say it can compare and swap.
    #[derive(Debug)]
    struct Forgetful(MemoryStore);
    #[async_trait::async_trait]
    impl BackupStore for Forgetful {
        fn name(&self) -> &'static str {
            "forgetful"
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
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
    let store = Forgetful(MemoryStore::new());
    assert!(store.capabilities().compare_and_swap);
    let key = BackupKey::custodian_backup("cl_1", "GDRIVE").unwrap();
    assert!(
        store
            .get_versioned(&key)
            .await
            .unwrap_err()
            .is_not_supported()
    );
    let failure = check_store(&store).await.unwrap_err();
    assert_eq!(failure.check, "compare_and_swap");
    assert!(
        failure.reason.contains("NotSupported") || failure.reason.contains("not support"),
        "{failure}"
    );
}

#[tokio::test]
async fn a_store_whose_client_stream_leaves_clients_out_or_repeats_them_is_caught() {
    /// Lists its clients whole correctly, but streams them wrong: none, or each twice.
    #[derive(Debug)]
    struct BadStream(MemoryStore, bool);
    #[async_trait::async_trait]
    impl BackupStore for BadStream {
        fn name(&self) -> &'static str {
            "bad-stream"
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn put(&self, k: &BackupKey, b: Bytes, o: PutOptions) -> Result<(), StorageError> {
            self.0.put(k, b, o).await
        }
        async fn get(&self, k: &BackupKey) -> Result<Bytes, StorageError> {
            self.0.get(k).await
        }
        async fn get_versioned(
            &self,
            k: &BackupKey,
        ) -> Result<(Bytes, ObjectVersion), StorageError> {
            self.0.get_versioned(k).await
        }
        async fn delete(&self, k: &BackupKey) -> Result<(), StorageError> {
            self.0.delete(k).await
        }
        async fn list(&self, c: &str) -> Result<Vec<BackupKey>, StorageError> {
            self.0.list(c).await
        }
        async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
            self.0.list_clients().await
        }
        fn stream_clients(&self) -> storage::ClientStream<'_> {
            use futures_util::StreamExt as _;
            let twice = self.1;
            self.0
                .stream_clients()
                .flat_map(move |c| {
                    let copies = match c {
                        Ok(c) if twice => vec![Ok(c.clone()), Ok(c)],
                        Ok(_) => Vec::new(),
                        Err(e) => vec![Err(e)],
                    };
                    futures_util::stream::iter(copies)
                })
                .boxed()
        }
    }
    for (twice, says) in [(false, "left out"), (true, "twice")] {
        let failure = check_store(&BadStream(MemoryStore::new(), twice))
            .await
            .unwrap_err();
        assert_eq!(failure.check, "list", "{failure}");
        assert!(failure.reason.contains(says), "{failure}");
    }
    // The memory store's default stream (its whole listing, streamed) passes.
    check_store(&MemoryStore::new()).await.unwrap();
}

#[tokio::test]
async fn a_store_whose_batch_calls_differ_from_its_single_calls_is_caught() {
    /// Batches that skip a step: `read_clients` drops the versions, or `put_many` answers
    /// Ok for every put without writing the stale one's conflict.
    #[derive(Debug)]
    struct Sloppy(MemoryStore, bool);
    #[async_trait::async_trait]
    impl BackupStore for Sloppy {
        fn name(&self) -> &'static str {
            "sloppy"
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn put(&self, k: &BackupKey, b: Bytes, o: PutOptions) -> Result<(), StorageError> {
            self.0.put(k, b, o).await
        }
        async fn get(&self, k: &BackupKey) -> Result<Bytes, StorageError> {
            self.0.get(k).await
        }
        async fn get_versioned(
            &self,
            k: &BackupKey,
        ) -> Result<(Bytes, ObjectVersion), StorageError> {
            self.0.get_versioned(k).await
        }
        async fn delete(&self, k: &BackupKey) -> Result<(), StorageError> {
            self.0.delete(k).await
        }
        async fn list(&self, c: &str) -> Result<Vec<BackupKey>, StorageError> {
            self.0.list(c).await
        }
        async fn read_clients(&self, ids: &[String]) -> Vec<storage::batch::ClientObjects> {
            let mut read = storage::batch::read_clients_one_by_one(self, ids).await;
            if self.1 {
                for objects in read.iter_mut().flatten() {
                    for (_, object) in objects.iter_mut() {
                        if let Ok(object) = object {
                            object.version = None;
                        }
                    }
                }
            }
            read
        }
        async fn put_many(&self, puts: Vec<storage::batch::Put>) -> Vec<Result<(), StorageError>> {
            let n = puts.len();
            for (k, b, _) in puts {
                let _ = self.0.put(&k, b, PutOptions::overwrite()).await;
            }
            std::iter::repeat_with(|| Ok(())).take(n).collect()
        }
    }
    for drops_versions in [true, false] {
        let failure = check_store(&Sloppy(MemoryStore::new(), drops_versions))
            .await
            .unwrap_err();
        assert_eq!(failure.check, "batches", "{failure}");
    }
}

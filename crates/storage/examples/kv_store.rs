//! A complete `BackupStore` over a key-value service, the example of the guide
//! `storage::docs::writing_a_store`. Run it with
//! `cargo run -p portal-backup-storage --example kv_store --features conformance`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use storage::{BackupKey, BackupStore, Capabilities, PutMode, PutOptions, StorageError};

// ---------------------------------------------------------------------------------------
// The service. Stands in for your own client: etcd, Consul, DynamoDB, Redis, an internal
// REST API. What matters is what it offers: get, a put that can be made conditional on the
// name being free, delete, and a scan by name prefix.
// ---------------------------------------------------------------------------------------

/// The condition of a [`KvClient::put`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Write only if nothing is stored under the name (`If-None-Match: *`, `attribute_not_exists`,
    /// `INSERT` without `ON CONFLICT`).
    Absent,
    /// Write unconditionally.
    Any,
}

/// What the service reports.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The condition of a put did not hold.
    #[error("condition failed")]
    ConditionFailed,
    /// Too many requests, or a timeout: try again later.
    #[error("throttled")]
    Throttled,
}

/// An in-process key-value service.
#[derive(Debug, Default)]
pub struct KvClient {
    data: Mutex<BTreeMap<String, Vec<u8>>>,
    /// How many of the next calls fail with [`KvError::Throttled`] (to test retries).
    throttle_next: AtomicU32,
}

impl KvClient {
    /// Makes the next `n` calls fail with [`KvError::Throttled`].
    pub fn throttle_next(&self, n: u32) {
        self.throttle_next.store(n, Ordering::SeqCst);
    }

    fn call(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, Vec<u8>>>, KvError> {
        let throttled = self
            .throttle_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            return Err(KvError::Throttled);
        }
        Ok(self.data.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The value under `name`.
    ///
    /// # Errors
    /// [`KvError::Throttled`].
    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.call()?.get(name).cloned())
    }

    /// Stores `value` under `name` if `condition` holds, atomically.
    ///
    /// # Errors
    /// [`KvError::ConditionFailed`] when it does not; [`KvError::Throttled`].
    pub async fn put(&self, name: &str, value: &[u8], condition: Condition) -> Result<(), KvError> {
        let mut data = self.call()?;
        if condition == Condition::Absent && data.contains_key(name) {
            return Err(KvError::ConditionFailed);
        }
        data.insert(name.to_owned(), value.to_vec());
        Ok(())
    }

    /// Removes `name`; succeeds if it is absent.
    ///
    /// # Errors
    /// [`KvError::Throttled`].
    pub async fn delete(&self, name: &str) -> Result<(), KvError> {
        self.call()?.remove(name);
        Ok(())
    }

    /// The names that start with `prefix`, in byte order.
    ///
    /// # Errors
    /// [`KvError::Throttled`].
    pub async fn scan(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        Ok(self
            .call()?
            .range(prefix.to_owned()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(name, _)| name.clone())
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// The store.
// ---------------------------------------------------------------------------------------

/// A [`BackupStore`] over a [`KvClient`], under a name prefix of its own.
#[derive(Debug)]
pub struct KvStore {
    client: KvClient,
    prefix: String,
}

impl KvStore {
    /// A store that keeps every object under `prefix` (for example `"backups/"`), so it can
    /// share the service with other data.
    pub fn new(client: KvClient, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
        }
    }

    /// The service, for tests.
    pub fn client(&self) -> &KvClient {
        &self.client
    }

    /// 1. Names: the key's stable path form, under our prefix.
    fn name_of(&self, key: &BackupKey) -> String {
        format!("{}{}", self.prefix, key.to_path())
    }
}

/// 2. Errors: the service's errors mapped onto `StorageError`. Throttling is retryable;
///    everything else keeps the service's error as the source.
fn storage_error(e: KvError) -> StorageError {
    match e {
        KvError::Throttled => StorageError::Unavailable {
            backend: "kv",
            source: Box::new(e),
        },
        other => StorageError::Backend {
            backend: "kv",
            source: Box::new(other),
        },
    }
}

#[async_trait::async_trait]
impl BackupStore for KvStore {
    fn name(&self) -> &'static str {
        "kv"
    }

    /// 3. Capabilities: this service keeps what it acknowledged and can do everything but
    ///    compare and swap (it has no version to compare a put with).
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::all();
        caps.compare_and_swap = false;
        caps
    }

    /// 4. Put: create-only maps to the service's conditional put, and its "condition
    ///    failed" to `AlreadyExists`. Modes added to `PutMode` later are refused.
    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        let condition = match options.mode {
            PutMode::Create => Condition::Absent,
            PutMode::Overwrite => Condition::Any,
            other => {
                return Err(StorageError::NotSupported {
                    operation: other.operation(),
                    backend: self.name(),
                });
            }
        };
        match self.client.put(&self.name_of(key), &body, condition).await {
            Ok(()) => Ok(()),
            Err(KvError::ConditionFailed) => Err(StorageError::AlreadyExists { key: key.clone() }),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// 5. Get: absent is `NotFound`, naming the key.
    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        match self
            .client
            .get(&self.name_of(key))
            .await
            .map_err(storage_error)?
        {
            Some(value) => Ok(Bytes::from(value)),
            None => Err(StorageError::NotFound { key: key.clone() }),
        }
    }

    /// 6. Delete: deleting an absent key succeeds.
    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        self.client
            .delete(&self.name_of(key))
            .await
            .map_err(storage_error)
    }

    /// 7. List: scan `prefix + client id + "/"` (the `/` keeps `cl_1` from listing `cl_10`),
    ///    parse the names back into keys, skip names that are not keys, sort by path form.
    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        let scan = format!("{}{}", self.prefix, BackupKey::client_prefix(client_id)?);
        let names = self.client.scan(&scan).await.map_err(storage_error)?;
        let mut keys: Vec<BackupKey> = names
            .iter()
            .filter_map(|name| name.strip_prefix(&self.prefix))
            .filter_map(|path| BackupKey::from_path(path).ok())
            .collect();
        keys.sort_by_key(BackupKey::to_path);
        Ok(keys)
    }
}

/// 8. Proof: the conformance kit. Also a good start-up self-test of a configuration.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let store = KvStore::new(KvClient::default(), "backups/");
    if let Err(failure) = storage::conformance::check_store(&store).await {
        panic!("{failure}");
    }

    // Throttling surfaces as a retryable error.
    let key = BackupKey::client_backup("cl_1", "bsp_1", "SECP256K1").expect("a valid key");
    store.client().throttle_next(1);
    let err = store.get(&key).await.expect_err("throttled");
    assert!(err.is_retryable());
    println!("the kv store passes the conformance kit");
}

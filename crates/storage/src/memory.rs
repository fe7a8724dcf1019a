//! A store in memory, for tests, demos and as a reference implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{
    BackupStore, Capabilities, GET_VERSIONED_OPERATION, ObjectVersion, PutMode, PutOptions,
};

/// A [`BackupStore`] in a map behind a mutex. Not durable: everything is gone when it is
/// dropped.
///
/// [`MemoryStore::with_capabilities`] makes one that refuses some operations, to test code
/// against stores such as the Portal-managed one (no delete, no list, no create-only).
///
/// ```
/// use storage::{BackupKey, BackupStore, BackupStoreExt, Capabilities, memory::MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut caps = Capabilities::all();
/// (caps.conditional_create, caps.delete, caps.list) = (false, false, false);
/// let portal_like = MemoryStore::with_capabilities(caps);
/// let key = BackupKey::client_backup("cl_1", "bsp_1", "ED25519")?;
/// assert!(portal_like.put_new(&key, "x".into()).await.unwrap_err().is_not_supported());
/// portal_like.put_overwrite(&key, "x".into()).await?;
/// assert!(portal_like.delete(&key).await.unwrap_err().is_not_supported());
/// # Ok::<_, storage::StorageError>(()) }).unwrap();
/// ```
pub struct MemoryStore {
    capabilities: Capabilities,
    objects: Mutex<Objects>,
}

/// The map and the version counter, under one lock.
#[derive(Default)]
struct Objects {
    /// By path form, so that one client's keys are one range, in path order.
    by_path: BTreeMap<String, Stored>,
    /// The version the next write gets: never reused, so a key deleted and written again
    /// never gets a version it had before.
    next_version: u64,
}

struct Stored {
    key: BackupKey,
    body: Bytes,
    version: u64,
}

impl MemoryStore {
    /// An empty store that can do everything but survive a restart.
    #[must_use]
    pub fn new() -> Self {
        let mut caps = Capabilities::all();
        caps.durable = false;
        Self::with_capabilities(caps)
    }

    /// An empty store that does only what `capabilities` says and returns
    /// [`StorageError::NotSupported`] for the rest. `durable` is reported as given.
    #[must_use]
    pub fn with_capabilities(capabilities: Capabilities) -> Self {
        Self {
            capabilities,
            objects: Mutex::new(Objects::default()),
        }
    }

    /// How many objects are stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().by_path.len()
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().by_path.is_empty()
    }

    /// Every stored key, of every client, in path order.
    #[must_use]
    pub fn keys(&self) -> Vec<BackupKey> {
        self.lock()
            .by_path
            .values()
            .map(|s| s.key.clone())
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, Objects> {
        // The map is consistent after every statement, so a poisoned lock is still usable.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unsupported(&self, operation: &'static str) -> StorageError {
        StorageError::NotSupported {
            operation,
            backend: self.name(),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("capabilities", &self.capabilities)
            .field("objects", &self.len())
            .finish()
    }
}

#[async_trait::async_trait]
impl BackupStore for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        let mut objects = self.lock();
        let path = key.to_path();
        let stored = objects.by_path.get(&path).map(|s| s.version);
        match options.mode {
            PutMode::Create if self.capabilities.conditional_create => {
                if stored.is_some() {
                    return Err(StorageError::AlreadyExists { key: key.clone() });
                }
            }
            PutMode::Overwrite if self.capabilities.overwrite => {}
            PutMode::Update(expected) if self.capabilities.compare_and_swap => {
                if stored.map(version_of) != Some(expected) {
                    return Err(StorageError::Conflict { key: key.clone() });
                }
            }
            mode => return Err(self.unsupported(mode.operation())),
        }
        objects.next_version = objects.next_version.saturating_add(1);
        let version = objects.next_version;
        objects.by_path.insert(
            path,
            Stored {
                key: key.clone(),
                body,
                version,
            },
        );
        Ok(())
    }

    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.lock()
            .by_path
            .get(&key.to_path())
            .map(|s| s.body.clone())
            .ok_or_else(|| StorageError::NotFound { key: key.clone() })
    }

    async fn get_versioned(&self, key: &BackupKey) -> Result<(Bytes, ObjectVersion), StorageError> {
        if !self.capabilities.compare_and_swap {
            return Err(self.unsupported(GET_VERSIONED_OPERATION));
        }
        self.lock()
            .by_path
            .get(&key.to_path())
            .map(|s| (s.body.clone(), version_of(s.version)))
            .ok_or_else(|| StorageError::NotFound { key: key.clone() })
    }

    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        if !self.capabilities.delete {
            return Err(self.unsupported("delete"));
        }
        self.lock().by_path.remove(&key.to_path());
        Ok(())
    }

    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        if !self.capabilities.list {
            return Err(self.unsupported("list"));
        }
        let prefix = BackupKey::client_prefix(client_id)?;
        Ok(self
            .lock()
            .by_path
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .map(|(_, s)| s.key.clone())
            .collect())
    }

    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        if !self.capabilities.list {
            return Err(self.unsupported("list clients"));
        }
        let clients: std::collections::BTreeSet<String> = self
            .lock()
            .by_path
            .values()
            .map(|s| s.key.client_id().to_owned())
            .collect();
        Ok(clients.into_iter().collect())
    }
}

fn version_of(counter: u64) -> ObjectVersion {
    ObjectVersion::from_version(counter.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_bodies() {
        let store = MemoryStore::new();
        let key = BackupKey::custodian_backup("cl", "GDRIVE").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(store.put(&key, Bytes::from_static(b"SECRETISH"), PutOptions::create()))
            .unwrap();
        let debug = format!("{store:?}");
        assert!(!debug.contains("SECRETISH"), "{debug}");
        assert!(debug.contains("objects: 1"), "{debug}");
    }
}

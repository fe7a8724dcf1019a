//! A store in memory, for tests, demos and as a reference implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use crate::error::StorageError;
use crate::key::BackupKey;
use crate::store::{BackupStore, Capabilities, PutMode, PutOptions};

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
    /// By path form, so that one client's keys are one range, in path order.
    objects: Mutex<BTreeMap<String, (BackupKey, Bytes)>>,
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
            objects: Mutex::new(BTreeMap::new()),
        }
    }

    /// How many objects are stored.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is stored.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Every stored key, of every client, in path order.
    #[must_use]
    pub fn keys(&self) -> Vec<BackupKey> {
        self.lock().values().map(|(k, _)| k.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, (BackupKey, Bytes)>> {
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
        match options.mode {
            PutMode::Create if self.capabilities.conditional_create => {
                if objects.contains_key(&key.to_path()) {
                    return Err(StorageError::AlreadyExists { key: key.clone() });
                }
            }
            PutMode::Overwrite if self.capabilities.overwrite => {}
            mode => return Err(self.unsupported(mode.operation())),
        }
        objects.insert(key.to_path(), (key.clone(), body));
        Ok(())
    }

    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        self.lock()
            .get(&key.to_path())
            .map(|(_, body)| body.clone())
            .ok_or_else(|| StorageError::NotFound { key: key.clone() })
    }

    async fn delete(&self, key: &BackupKey) -> Result<(), StorageError> {
        if !self.capabilities.delete {
            return Err(self.unsupported("delete"));
        }
        self.lock().remove(&key.to_path());
        Ok(())
    }

    async fn list(&self, client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        if !self.capabilities.list {
            return Err(self.unsupported("list"));
        }
        let prefix = BackupKey::client_prefix(client_id)?;
        Ok(self
            .lock()
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .map(|(_, (key, _))| key.clone())
            .collect())
    }

    async fn list_clients(&self) -> Result<Vec<String>, StorageError> {
        if !self.capabilities.list {
            return Err(self.unsupported("list clients"));
        }
        let clients: std::collections::BTreeSet<String> = self
            .lock()
            .values()
            .map(|(key, _)| key.client_id().to_owned())
            .collect();
        Ok(clients.into_iter().collect())
    }
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

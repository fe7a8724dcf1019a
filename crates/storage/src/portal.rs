//! Portal-Managed Backups: the client backup ciphertext kept by Portal, as the
//! `clientCipherText` of its backup share pair.

use bytes::Bytes;

use crate::error::StorageError;
use crate::key::{BackupKey, ShareKind};
use crate::store::{BackupStore, Capabilities, PutMode, PutOptions};

const NAME: &str = "portal";

/// The client backup ciphertexts, stored with Portal over its Client API:
/// `PATCH /api/v3/clients/me/backup-share-pairs/{id}` to put,
/// `GET …/backup-share-pairs/{id}/cipher-text` to get.
///
/// What Portal cannot do is reported as [`StorageError::NotSupported`], never faked: there is
/// no delete, no listing and no create-only put (a `PATCH` always replaces), and only client
/// backup shares can be kept, one per backup share pair. Bodies must be UTF-8 text (the
/// envelope's text form), because `clientCipherText` is a string.
///
/// ```no_run
/// # async fn demo(client: portal_api::ClientApi) -> Result<(), storage::StorageError> {
/// use storage::{BackupKey, BackupStore, PutOptions, portal::PortalStore};
/// let store = PortalStore::new(client); // one client's session: keeps that client's ciphertexts
/// let key = BackupKey::client_backup("cl_1", "bsp_1", "SECP256K1")?;
/// store.put(&key, "pbe1.…".into(), PutOptions::overwrite()).await?;
/// let back = store.get(&key).await?;
/// # Ok(()) }
/// ```
///
/// A `PortalStore` belongs to one client session: Portal's routes are `clients/me/...`, so
/// the client of a key is the client whose [`ClientApi`](portal_api::ClientApi) the store was
/// made with, whatever client id the key names. Make one per client session.
#[derive(Clone, Debug)]
pub struct PortalStore {
    client: portal_api::ClientApi,
}

impl PortalStore {
    /// The store of the client that `client` acts as (Client API Key or session token).
    #[must_use]
    pub fn new(client: portal_api::ClientApi) -> Self {
        Self { client }
    }

    fn pair_id(key: &BackupKey) -> Result<&str, StorageError> {
        match (key.kind(), key.share_pair_id()) {
            (ShareKind::ClientBackup, Some(id)) => Ok(id),
            _ => Err(StorageError::NotSupported {
                operation: "keeping anything but client backup shares",
                backend: NAME,
            }),
        }
    }
}

fn portal_error(key: &BackupKey, error: portal_api::Error) -> StorageError {
    if error.status() == Some(404) {
        return StorageError::NotFound { key: key.clone() };
    }
    if error.is_retryable() {
        return StorageError::Unavailable {
            backend: NAME,
            source: Box::new(error),
        };
    }
    StorageError::Backend {
        backend: NAME,
        source: Box::new(error),
    }
}

#[async_trait::async_trait]
impl BackupStore for PortalStore {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            overwrite: true,
            durable: true,
            ..Capabilities::default()
        }
    }

    async fn put(
        &self,
        key: &BackupKey,
        body: Bytes,
        options: PutOptions,
    ) -> Result<(), StorageError> {
        if options.mode != PutMode::Overwrite {
            return Err(StorageError::NotSupported {
                operation: options.mode.operation(),
                backend: NAME,
            });
        }
        let pair_id = Self::pair_id(key)?;
        let text = std::str::from_utf8(&body).map_err(|e| StorageError::Backend {
            backend: NAME,
            source: format!("clientCipherText must be UTF-8 text: {e}").into(),
        })?;
        self.client
            .store_cipher_text(pair_id, text)
            .await
            .map_err(|e| portal_error(key, e))
    }

    async fn get(&self, key: &BackupKey) -> Result<Bytes, StorageError> {
        let pair_id = Self::pair_id(key)?;
        let text = self
            .client
            .cipher_text(pair_id)
            .await
            .map_err(|e| portal_error(key, e))?;
        Ok(Bytes::from(text.into_bytes()))
    }

    async fn delete(&self, _key: &BackupKey) -> Result<(), StorageError> {
        Err(StorageError::NotSupported {
            operation: "delete",
            backend: NAME,
        })
    }

    async fn list(&self, _client_id: &str) -> Result<Vec<BackupKey>, StorageError> {
        Err(StorageError::NotSupported {
            operation: "list",
            backend: NAME,
        })
    }
}

//! [`Flow`]: the Portal client, keyring, store and journal that every operation shares.

use std::path::Path;
use std::sync::Arc;

use envelope::Keyring;
use storage::BackupStore;

use crate::error::{Error, Result};
use crate::journal::Journal;

/// Where the client backup ciphertexts live.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CiphertextStore {
    /// With Portal (Portal-Managed Backups): `clientCipherText` on each backup share pair.
    Portal,
    /// In a store of the integrator's own (a directory, a database, a bucket).
    Own(Arc<dyn BackupStore>),
}

/// Everything an operation needs: who we are at Portal, the KEKs, where ciphertext goes, and
/// the journal that makes every operation resumable.
///
/// Cheap to clone; [`Flow::for_client`] gives the same flow acting as another client (the
/// bulk run does this once per input line).
#[derive(Clone, Debug)]
pub struct Flow {
    pub(crate) portal: portal_api::Client,
    pub(crate) keyring: Keyring,
    pub(crate) target: CiphertextStore,
    pub(crate) store: Arc<dyn BackupStore>,
    pub(crate) signing_store: Option<Arc<dyn BackupStore>>,
    pub(crate) journal: Journal,
}

impl Flow {
    /// A flow over a Portal client (authenticated as a client, or as a custodian for
    /// [`eject`](Self::eject)), a keyring, a ciphertext store and a state directory.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty keyring; [`Error::Journal`] when the state directory
    /// cannot be created.
    pub fn new(
        portal: portal_api::Client,
        keyring: Keyring,
        target: CiphertextStore,
        state_dir: &Path,
    ) -> Result<Self> {
        if keyring.is_empty() {
            return Err(Error::Invalid(
                "at least one key-encryption key is needed".into(),
            ));
        }
        let store = resolve(&portal, &target);
        Ok(Self {
            portal,
            keyring,
            target,
            store,
            signing_store: None,
            journal: Journal::open(state_dir)?,
        })
    }

    /// Also seal and store the new signing shares that [`recover`](Self::recover) returns,
    /// in `store`, before they are confirmed to Portal.
    #[must_use]
    pub fn with_signing_store(mut self, store: Arc<dyn BackupStore>) -> Self {
        self.signing_store = Some(store);
        self
    }

    /// The same flow acting through another Portal client (another client API key or
    /// session token; the connection pool and rate limits stay shared).
    #[must_use]
    pub fn for_client(&self, portal: portal_api::Client) -> Self {
        let store = resolve(&portal, &self.target);
        Self {
            portal,
            store,
            ..self.clone()
        }
    }

    /// The ciphertext store's name, as reported in results (`portal`, `fs`, …).
    #[must_use]
    pub fn store_name(&self) -> &'static str {
        self.store.name()
    }

    /// The keyring.
    #[must_use]
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Every object the store holds for `client_id`.
    pub(crate) async fn list_client(&self, client_id: &str) -> Result<Vec<storage::BackupKey>> {
        self.store
            .list(client_id)
            .await
            .map_err(|source| Error::Store {
                operation: "list",
                key: client_id.to_owned(),
                source: Box::new(source),
            })
    }
}

fn resolve(portal: &portal_api::Client, target: &CiphertextStore) -> Arc<dyn BackupStore> {
    match target {
        CiphertextStore::Portal => Arc::new(storage::portal::PortalStore::new(portal.clone())),
        CiphertextStore::Own(store) => Arc::clone(store),
    }
}
